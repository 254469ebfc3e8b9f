# Two commands do all set-up from a fresh clone: `make demo` and `make test`.
# Set-up = install uv with pip if it is missing, then sync the locked environment into .venv.
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup compile demo test lint pytest bench clean

setup: $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --locked --compile-bytecode --python $(PYTHON)
	@touch $@

# every CLI call starts a Python process: byte-compile the project's own modules once (Python
# still recompiles, in memory, any module edited since), so a call does not compile ~1,400 code
# objects first (0.2 s per call here; `uv sync --compile-bytecode` does the same for the
# dependencies, about 1 s per call)
compile: setup
	@$(BIN)/python -m compileall -q deid flows keys transfer

demo: setup compile
	$(BIN)/genegate demo

test: setup lint pytest

lint: setup
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: setup
	$(BIN)/python -m pytest

bench: setup compile
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache .mypy_cache .ruff_cache

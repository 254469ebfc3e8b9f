# Two commands do all set-up from a fresh clone: `make demo` and `make test`.
# Set-up = install uv with pip if it is missing, then sync the locked environment into .venv.
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint pytest bench clean

setup: $(VENV)/.synced

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --locked --python $(PYTHON)
	@touch $@

demo: setup
	$(BIN)/genegate demo

test: setup lint pytest

lint: setup
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache .mypy_cache .ruff_cache

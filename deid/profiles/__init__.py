"""Built-in de-identification profiles (TOML data files)."""

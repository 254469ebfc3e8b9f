"""Re-identification tests T01–T14 (SPEC.md 4; definitions in research/reid.md 5): one module per test."""

"""Benchmarks (run as scripts from the repository root; see each one's docstring)."""

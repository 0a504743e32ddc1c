"""Fault suites: real processes killed and services stopped under load (docs/API.md §1)."""

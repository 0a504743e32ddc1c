"""Fuzzing harnesses shared by the in-suite short runs (tests/adversarial) and the long runs (bench/fuzz)."""

"""The benchmark harness behind benchmarks/run.py (runs in the project's interpreter)."""

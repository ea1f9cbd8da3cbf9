"""Fault-injection tests: workers, supervisors, Redis and connections killed mid-run."""

"""The benchmark suite (not part of the test run). Run it with ``bash benchmarks/run.sh``."""

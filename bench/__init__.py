"""Side-by-side benchmarks of borobridge: each script runs the bridge and its baseline in one run.

Run one with ``python -m bench.<name> [--quick]`` or all of them with ``python -m bench.run_all``; each prints
a table of medians, minima, maxima and the ratio to its baseline (see BENCHMARKS.md).
"""

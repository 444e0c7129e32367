"""blockspec benchmarks: `python bench/run.py [--quick]`; see BENCHMARKS.md."""

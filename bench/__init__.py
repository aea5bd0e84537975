"""Benchmarks of spx-put-watch: `python -m bench` (see bench/README.md). They print figures; they assert nothing."""

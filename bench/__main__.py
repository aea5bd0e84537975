"""`python -m bench [--quick] [--only NAME ...] [--results bench/RESULTS.md]`."""
from bench.run import main

main()

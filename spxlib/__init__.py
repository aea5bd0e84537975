"""spx-put-watch: watches out-of-the-money SPX put volume for unusual institutional hedging."""

__version__ = "0.1.0"

"""Command-line entry points (click) over the spxlib library."""

"""Fixtures for the simulated market and its HTTP server (filled in by the simulator work)."""

"""The web dashboard: a read-only JSON API and one page (see dashboard.app.create_app)."""
from .app import create_app

__all__ = ["create_app"]

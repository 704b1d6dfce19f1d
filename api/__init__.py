"""entityflow's HTTP API, CLI and configuration.

Read ``settings.py`` first (what can be configured), then ``app.py`` (``create_app``: the
routes generated from the registered domain) and ``errors.py`` (every error's HTTP status,
in one place). ``client.py`` is the typed HTTP client for other services: importing it
(or this package) needs httpx, not FastAPI; ``api.app`` is where the server starts.
"""

from api.client import EntityflowClient
from api.settings import Settings

__all__ = ["EntityflowClient", "Settings"]

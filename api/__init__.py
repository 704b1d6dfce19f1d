"""entityflow's HTTP API, CLI and configuration.

Read ``settings.py`` first (what can be configured), then ``app.py`` (``create_app``: the
routes generated from the registered entities) and ``errors.py`` (every error's HTTP
status, in one place); ``client.py`` is the typed HTTP client for other services.
"""

from api.app import AppParts, create_app
from api.client import EntityflowClient
from api.settings import Settings

__all__ = ["AppParts", "EntityflowClient", "Settings", "create_app"]

"""Domain module: the shop, the order saga and release 2 of ``Drift``."""

from tests.integration.drift_domains import domain

DOMAIN = domain("v2")

__all__ = ["DOMAIN"]

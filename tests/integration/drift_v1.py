"""Domain module: the shop, the order saga and release 1 of ``Drift``."""

from tests.integration.drift_domains import domain

DOMAIN = domain("v1")

__all__ = ["DOMAIN"]

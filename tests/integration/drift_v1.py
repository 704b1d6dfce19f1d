"""Domain module: the shop, the order saga and release 1 of ``Drift``."""

from examples.shop import ENTITIES
from tests.integration.drift_domains import kinds

KINDS = kinds("v1")

__all__ = ["ENTITIES", "KINDS"]

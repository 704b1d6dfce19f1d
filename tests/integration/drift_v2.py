"""Domain module: the shop, the order saga and release 2 of ``Drift`` (a changed step 2)."""

from examples.shop import ENTITIES
from tests.integration.drift_domains import kinds

KINDS = kinds("v2")

__all__ = ["ENTITIES", "KINDS"]

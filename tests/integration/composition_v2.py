"""Domain module: the shop, child workflows and release 2 of ``Evolve``."""

from tests.integration.composition_domains import domain

DOMAIN = domain("v2")

__all__ = ["DOMAIN"]

"""Domain module: the shop, child workflows and release 1 of ``Evolve``."""

from tests.integration.composition_domains import domain

DOMAIN = domain("v1")

__all__ = ["DOMAIN"]

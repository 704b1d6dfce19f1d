"""The shop and its order saga, as `entityflow worker --domain tests.integration.saga_domain`
runs them in the saga crash tests (replies overdue after 2 s are asked for again)."""

from __future__ import annotations

from examples.shop import ACTIVITIES, ENTITIES, order_saga
from sagas import Domain

DOMAIN = Domain(ENTITIES, (order_saga,), activities=ACTIVITIES, resend_after=2.0)

__all__ = ["DOMAIN"]

"""A domain whose workflow charges through a slow activity, for the kill -9 tests.

The "payment provider" is two tables in the test's PostgreSQL schema: every attempt
writes a row to ``attempts``; a charge is written to ``charges`` once per idempotency
key, as a provider that deduplicates on the key would.
"""

from __future__ import annotations

import os
import time

import psycopg
from psycopg import sql
from pydantic import BaseModel

from examples.shop import Account
from sagas import (
    ActivityError,
    Domain,
    RetryPolicy,
    Workflow,
    WorkflowContext,
    activity,
    activity_info,
    heartbeat,
)


def provider() -> tuple[str, str]:
    """(connection URL, schema) of the provider's tables: the store's schema."""
    base, _, schema = os.environ["ENTITYFLOW_STORE"].partition("?schema=")
    return base, schema


def create_provider_tables(base: str, schema: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.attempts (key text, attempt int, pid int, "
                "at timestamptz DEFAULT now())"
            ).format(sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {}.charges (key text PRIMARY KEY, pid int)").format(
                sql.Identifier(schema)
            )
        )


@activity
def slow_charge(order: str, seconds: float) -> int:
    """Takes ``seconds``, heartbeating, then charges once per key; returns its pid."""
    base, schema = provider()
    info = activity_info()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.attempts (key, attempt, pid) VALUES (%s, %s, %s)").format(
                sql.Identifier(schema)
            ),
            (info.idempotency_key, info.attempt, os.getpid()),
        )
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            heartbeat()
            time.sleep(0.05)
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.charges (key, pid) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING"
            ).format(sql.Identifier(schema)),
            (info.idempotency_key, os.getpid()),
        )
    return os.getpid()


class ChargeInput(BaseModel):
    order: str
    seconds: float


charge_order = Workflow("ChargeOrder", input=ChargeInput, output=int)


@charge_order.run
async def run_charge_order(ctx: WorkflowContext, c: ChargeInput) -> int:
    patient = slow_charge.options(
        start_to_close=30,
        heartbeat_timeout=2,
        retry=RetryPolicy(attempts=5, initial_interval=0.2, max_interval=1.0),
    )
    return await ctx.execute_activity(patient, c.order, c.seconds)


queued_charge = Workflow("QueuedCharge", input=ChargeInput, output=str)


@queued_charge.run
async def run_queued_charge(ctx: WorkflowContext, c: ChargeInput) -> str:
    """Waits ``seconds`` at most for a worker to take each of two attempts."""
    waiting = slow_charge.options(
        schedule_to_start=c.seconds, retry=RetryPolicy(attempts=2, initial_interval=0.1)
    )
    try:
        await ctx.execute_activity(waiting, c.order, 0.0)
    except ActivityError as exc:
        return f"{exc.timeout} after {exc.attempts} attempts"
    return "charged"


DOMAIN = Domain((Account,), workflows=[charge_order, queued_charge], activities=[slow_charge])

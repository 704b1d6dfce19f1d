"""What the metrics tests send, and what a worker's /metrics must then say, exactly.

Sent one after another (each awaited), so every count is known in advance: commands
straight from the client, three transfer sagas (two complete, one is refused by its
target three times, retries twice and compensates), and one handler that crashes.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from urllib.request import urlopen

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors import CommandFailedError, CommandRejectedError
from examples.shop import Account
from sagas import Host
from tests.actors_tests.support import Counter
from tests.integration.metrics_domain import transfer

DEPOSITS = 10
REFUSED_WITHDRAWALS = 3

# Account: 2 opens + 10 deposits + per completed transfer a withdrawal and a deposit
# (2 x 2) + the compensated one's withdrawal and its compensating deposit (2).
ACCOUNT_APPLIED = 2 + DEPOSITS + 4 + 2
# Refused straight (3 withdrawals from an empty account) and the deposit into the
# unopened account, three attempts.
ACCOUNT_REJECTED = REFUSED_WITHDRAWALS + 3
EXPECTED: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
    ("entityflow_worker_commands_total", (("actor_type", "Account"), ("outcome", "applied"))): (
        ACCOUNT_APPLIED
    ),
    ("entityflow_worker_commands_total", (("actor_type", "Account"), ("outcome", "rejected"))): (
        ACCOUNT_REJECTED
    ),
    (
        "entityflow_worker_commands_total",
        (("actor_type", "Counter"), ("outcome", "dead_lettered")),
    ): 1,
    (
        "entityflow_worker_commands_total",
        (("actor_type", "workflow:Transfer"), ("outcome", "applied")),
    ): 3,
    ("entityflow_worker_dead_letters_total", (("actor_type", "Counter"),)): 1,
    ("entityflow_worker_handler_seconds_count", (("actor_type", "Account"),)): (
        ACCOUNT_APPLIED + ACCOUNT_REJECTED
    ),
    ("entityflow_worker_handler_seconds_count", (("actor_type", "Counter"),)): 1,
    ("entityflow_workflows_started_total", (("workflow_type", "Transfer"),)): 3,
    (
        "entityflow_workflows_ended_total",
        (("status", "completed"), ("workflow_type", "Transfer")),
    ): 2,
    (
        "entityflow_workflows_ended_total",
        (("status", "compensated"), ("workflow_type", "Transfer")),
    ): 1,
    (
        "entityflow_workflow_duration_seconds_count",
        (("status", "completed"), ("workflow_type", "Transfer")),
    ): 2,
    (
        "entityflow_workflow_duration_seconds_count",
        (("status", "compensated"), ("workflow_type", "Transfer")),
    ): 1,
    ("entityflow_workflow_retries_total", (("kind", "entity"), ("workflow_type", "Transfer"))): 2,
    ("entityflow_worker_actors_in_memory", (("actor_type", "Account"),)): 3,
    ("entityflow_worker_actors_in_memory", (("actor_type", "Counter"),)): 1,
}


async def send(host: Host, timeout: float = 60.0) -> None:
    """Send the scenario through ``host``'s clients and wait for every saga to end."""
    client, workflows = host.client, host.workflows
    await client.update(Account.open.options(timeout=timeout), "acct-a", owner="a")
    await client.update(Account.open.options(timeout=timeout), "acct-b", owner="b")
    for _ in range(DEPOSITS):
        await client.update(Account.deposit.options(timeout=timeout), "acct-a", amount="10")
    for _ in range(REFUSED_WITHDRAWALS):
        with pytest.raises(CommandRejectedError):
            await client.update(Account.withdraw.options(timeout=timeout), "acct-b", amount="1")
    with pytest.raises(CommandFailedError):
        await client.update(Counter.crash.options(timeout=timeout), "c-1")
    for target in ("acct-b", "acct-b", "acct-nowhere"):
        wid = workflows.start(transfer, {"source": "acct-a", "target": target, "amount": "5"})
        await workflows.wait(transfer, wid, timeout=timeout)
    state = client.state(Account, "acct-a").state
    assert state.balance == Decimal(DEPOSITS * 10 - 10)  # the compensated 5 came back


def run(host: Host) -> None:
    asyncio.run(send(host))


Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(url: str) -> dict[Sample, float]:
    """Every sample a /metrics endpoint serves, keyed by name and sorted labels."""
    with urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def mismatches(samples: dict[Sample, float]) -> dict[Sample, tuple[float, float | None]]:
    """The expected samples whose value differs: {sample: (expected, served)}."""
    return {k: (v, samples.get(k)) for k, v in EXPECTED.items() if samples.get(k) != v}

"""Dead letters on the in-memory mailbox, with a real store: listed, re-driven, applied once.

A handler that crashes while a switch is on is the bug an operator fixes before a
re-drive; the worker is stepped by hand so each interleaving is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
from pydantic import BaseModel

from actors import (
    AlreadyRedrivenError,
    CommandContext,
    Entity,
    Envelope,
    Host,
    InMemoryMailbox,
    NotRedrivableError,
    UnknownDeadLetterError,
    apply,
    command,
)
from eventstore import DomainEvent


class ParcelState(BaseModel):
    shipped: int = 0


class Shipped(DomainEvent):
    event_type = "Shipped"


class Parcel(Entity[ParcelState]):
    """Shipping crashes while the bug is in (a switch a test turns off: the fix)."""

    bug: ClassVar[bool] = True

    @command
    def ship(self, ctx: CommandContext) -> int:
        ctx.emit(Shipped())
        if Parcel.bug:
            raise RuntimeError("label printer on fire")
        return self.state.shipped

    @apply
    def _shipped(self, event: Shipped) -> None:
        self.state.shipped += 1


@pytest.fixture
def host(store_url: str) -> Iterator[Host]:
    Parcel.bug = True
    mailbox = InMemoryMailbox(partitions=2)
    made = Host(store_url, [Parcel], mailbox=mailbox, run_worker=False)
    try:
        yield made
    finally:
        Parcel.bug = False
        made.stop()
        mailbox.close()


def _mailbox(host: Host) -> InMemoryMailbox:
    assert isinstance(host.mailbox, InMemoryMailbox)
    return host.mailbox


def _shipped(host: Host, parcel: str) -> int:
    return len(host.store.read(f"Parcel/{parcel}"))


def test_a_crashed_command_is_listed_with_what_an_operator_needs(host: Host) -> None:
    command_id = host.client.signal(Parcel.ship, "p-1")
    assert host.worker.step() == 1

    page = host.mailbox.list_dead_letters()
    (parked,) = page.dead_letters
    assert page.next_after is None
    assert (parked.id, parked.entity_type, parked.entity_id, parked.command) == (
        "0-0",
        "Parcel",
        "p-1",
        "ship",
    )
    assert parked.command_id == command_id
    assert parked.error == "RuntimeError: label printer on fire"
    assert parked.source.endswith(f"#{host.mailbox.partition_of('Parcel/p-1')}@0")
    assert parked.redriven_at is None
    assert host.mailbox.dead_letter_at("0-0") == parked
    outcome = host.store.outcome(command_id)
    assert outcome is not None and outcome.status == "dead_lettered"


def test_a_redrive_after_the_fix_applies_the_command_once_under_its_id(host: Host) -> None:
    command_id = host.client.signal(Parcel.ship, "p-1")
    host.worker.step()
    assert _shipped(host, "p-1") == 0

    Parcel.bug = False
    redriven = host.mailbox.redrive("0-0")
    assert redriven.redriven_at is not None
    assert host.worker.step() == 1

    outcome = host.store.outcome(command_id)
    assert outcome is not None and outcome.status == "applied"
    assert outcome.result == 1 and outcome.version == 1
    assert _shipped(host, "p-1") == 1
    assert host.mailbox.dead_letter_at("0-0").redriven_at == redriven.redriven_at
    assert host.mailbox.list_dead_letters().dead_letters[0].redriven_at is not None

    with pytest.raises(AlreadyRedrivenError) as refused:
        host.mailbox.redrive("0-0")
    assert refused.value.command_id == command_id
    assert host.worker.step() == 0
    assert _shipped(host, "p-1") == 1


def test_copies_of_a_redriven_command_apply_it_once_in_one_batch_or_across_batches(
    host: Host,
) -> None:
    """Two re-drives that raced past the check (or a broker's duplicate) do no harm."""
    command_id = host.client.signal(Parcel.ship, "p-1")
    host.worker.step()
    Parcel.bug = False
    again = _mailbox(host).dead_letters[0].delivery.envelope
    assert again is not None
    copy = again.model_copy(update={"redrive": "0-0"})
    host.mailbox.send(copy)
    host.mailbox.send(copy)
    assert host.worker.step() == 2
    host.mailbox.send(copy)
    assert host.worker.step() == 1
    assert _shipped(host, "p-1") == 1
    outcome = host.store.outcome(command_id)
    assert outcome is not None and outcome.status == "applied"


def test_a_redrive_while_the_bug_is_still_in_parks_it_again(host: Host) -> None:
    command_id = host.client.signal(Parcel.ship, "p-1")
    host.worker.step()
    host.mailbox.redrive("0-0")
    host.worker.step()

    first, second = host.mailbox.list_dead_letters().dead_letters
    assert first.redriven_at is not None and second.redriven_at is None
    assert second.command_id == command_id and second.id == "0-1"
    outcome = host.store.outcome(command_id)
    assert outcome is not None and outcome.status == "dead_lettered"

    Parcel.bug = False
    host.mailbox.redrive(second.id)
    host.worker.step()
    outcome = host.store.outcome(command_id)
    assert outcome is not None and outcome.status == "applied"
    assert _shipped(host, "p-1") == 1


def test_a_plain_duplicate_of_a_dead_lettered_command_is_not_run_again(host: Host) -> None:
    """Only a re-drive runs a dead-lettered command again, never a redelivered copy."""
    command_id = host.client.signal(Parcel.ship, "p-1")
    host.worker.step()
    Parcel.bug = False
    original = _mailbox(host).dead_letters[0].delivery.envelope
    assert original is not None
    host.mailbox.send(original)
    assert host.worker.step() == 1
    assert _shipped(host, "p-1") == 0
    assert len(_mailbox(host).dead_letters) == 1
    outcome = host.store.outcome(command_id)
    assert outcome is not None and outcome.status == "dead_lettered"


def test_pages_follow_the_log_and_bad_ids_say_what_an_id_is(host: Host) -> None:
    ids = [host.client.signal(Parcel.ship, f"p-{i}") for i in range(5)]
    host.worker.step()
    mailbox = host.mailbox
    first = mailbox.list_dead_letters(limit=2)
    assert [d.id for d in first.dead_letters] == ["0-0", "0-1"]
    assert first.next_after == "0-1"
    second = mailbox.list_dead_letters(after=first.next_after, limit=2)
    last = mailbox.list_dead_letters(after=second.next_after, limit=2)
    assert [d.id for d in second.dead_letters + last.dead_letters] == ["0-2", "0-3", "0-4"]
    assert last.next_after is None
    listed = first.dead_letters + second.dead_letters + last.dead_letters
    assert sorted(d.command_id or "" for d in listed) == sorted(ids)

    with pytest.raises(UnknownDeadLetterError):
        mailbox.dead_letter_at("0-99")
    with pytest.raises(UnknownDeadLetterError):
        mailbox.redrive("3-0")
    for bad in ("", "7", "a-b", "0-", "-1", "0--1"):
        with pytest.raises(ValueError, match="partition-offset"):
            mailbox.dead_letter_at(bad)


def test_undecodable_bytes_and_a_workflows_command_are_not_redriven(host: Host) -> None:
    mailbox = _mailbox(host)
    mailbox.append_raw(0, b"\x00not an envelope")
    sent_by_saga = Envelope(
        address="Parcel/p-9",
        kind="command",
        name="ship",
        reply_to="actor:workflow:Order/o-1",
        correlation="1",
    )
    mailbox.send(sent_by_saga)
    while host.worker.step():
        pass
    undecodable, saga_step = mailbox.list_dead_letters().dead_letters
    assert undecodable.envelope is None and undecodable.command == ""
    with pytest.raises(NotRedrivableError, match="undecodable"):
        mailbox.redrive(undecodable.id)
    with pytest.raises(NotRedrivableError, match="workflow:Order/o-1"):
        mailbox.redrive(saga_step.id)
    assert all(d.redriven_at is None for d in mailbox.list_dead_letters().dead_letters)

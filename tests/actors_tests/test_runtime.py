"""The runtime against a real store: rejections, duplicates, stale writers, the actor cache.

Batches are driven directly (``Driver``: process, commit, committed), exactly as the
worker does, so each test controls which commands share a batch. Every test runs on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from eventstore import ConcurrencyConflictError, Outcome, Store
from examples.shop import Account
from tests.actors_tests.conftest import ALL_ENTITIES
from tests.actors_tests.support import Counter, Driver, message, registry_of


def _balance(store: Store, entity_id: str) -> Decimal:
    d = Driver(store, ALL_ENTITIES)
    spec = d.kinds[0].spec
    stream = store.load(f"Account/{entity_id}")
    return Decimal(spec.rehydrate(entity_id, stream).state.balance)


def _summary(reply: Outcome[Any]) -> tuple[str, object, int | None]:
    return reply.status, reply.result, reply.version


# -- rejections ----------------------------------------------------------------------


def test_a_rejection_records_no_events(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([message(Account, "a", "open", owner="Ada")])
    before = store.max_position()
    reply = d.reply(message(Account, "a", "withdraw", amount="5"))
    assert reply.status == "rejected"
    assert reply.error == "insufficient funds: balance 0, asked 5"
    assert reply.version == 1
    assert store.max_position() == before
    assert store.last_version("Account/a") == 1
    outcome = store.outcome(reply.command_id)
    assert outcome is not None and outcome.status == "rejected"


def test_emit_then_reject_restores_state_for_the_rest_of_the_batch(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([message(Counter, "c", "add", by=1)])
    replies = d.replies(
        [
            message(Counter, "c", "add", by=10),
            message(Counter, "c", "add_then_reject", by=100),
            message(Counter, "c", "add", by=1000),
            message(Counter, "c", "add_then_reject", by=5),
            message(Counter, "c", "add", by=2),
        ]
    )
    assert [_summary(r) for r in replies] == [
        ("applied", 11, 2),
        ("rejected", None, 2),
        ("applied", 1011, 3),
        ("rejected", None, 3),
        ("applied", 1013, 4),
    ]
    assert replies[1].error == "refused after adding 100"
    events = store.read("Counter/c")
    assert [(e.version, e.event.model_dump()) for e in events] == [
        (1, {"by": 1}),
        (2, {"by": 10}),
        (3, {"by": 1000}),
        (4, {"by": 2}),
    ]
    # The cached actor agrees with the store.
    later = d.reply(message(Counter, "c", "add", by=0))
    assert _summary(later) == ("applied", 1013, 5)


def test_emit_then_reject_on_a_new_entity(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    replies = d.replies(
        [message(Counter, "n", "add_then_reject", by=7), message(Counter, "n", "add", by=1)]
    )
    assert [_summary(r) for r in replies] == [("rejected", None, 0), ("applied", 1, 1)]
    assert store.last_version("Counter/n") == 1


def test_a_crashing_handler_records_no_events_and_is_dead_lettered(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    batch = d.run(
        [
            message(Counter, "c", "add", by=1),
            message(Counter, "c", "add_then_crash", by=50),
            message(Counter, "c", "add", by=2),
        ]
    )
    replies = [reply for _, reply, _ in batch.replies]
    assert [_summary(r) for r in replies] == [
        ("applied", 1, 1),
        ("dead_lettered", None, 1),
        ("applied", 3, 2),
    ]
    assert replies[1].error == "RuntimeError: boom after adding 50"
    (dead,) = batch.dead_letters
    assert dead[0].offset == 1 and dead[1] == "RuntimeError: boom after adding 50"
    assert [e.event.model_dump() for e in store.read("Counter/c")] == [{"by": 1}, {"by": 2}]


def test_messages_for_unknown_actor_types_are_invalid(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    env = message(Counter, "c", "add", by=1).model_copy(update={"address": "Ghost/c"})
    reply = d.reply(env)
    assert reply.status == "invalid"
    assert reply.error == "no actor type is registered as 'Ghost'"
    assert store.max_position() == 0


# -- duplicates ------------------------------------------------------------------------


def test_duplicate_in_one_batch_is_applied_once(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([message(Account, "a", "open", owner="Ada")])
    dep = message(Account, "a", "deposit", amount="10", command_id="dep-1")
    other = message(Account, "a", "deposit", amount="1")
    replies = d.replies([dep, other, dep])
    assert [_summary(r) for r in replies] == [
        ("applied", "10", 2),
        ("applied", "11", 3),
        ("applied", "10", 2),
    ]
    assert store.last_version("Account/a") == 3
    assert _balance(store, "a") == Decimal("11")


def test_duplicate_in_a_later_batch_gets_the_original_reply(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([message(Account, "a", "open", owner="Ada")])
    dep = message(Account, "a", "deposit", amount="10", command_id="dep-1")
    first = d.reply(dep)
    d.run([message(Account, "a", "deposit", amount="5")])
    again = d.reply(dep.model_copy(update={"reply_to": "local:another-caller"}))
    assert _summary(first) == _summary(again) == ("applied", "10", 2)
    assert store.last_version("Account/a") == 3
    # A duplicate of a rejected command is rejected again, without looking at the state.
    too_much = message(Account, "a", "withdraw", amount="100", command_id="wd-1")
    assert d.reply(too_much).status == "rejected"
    d.run([message(Account, "a", "deposit", amount="1000")])
    repeated = d.reply(too_much)
    assert (repeated.status, repeated.version) == ("rejected", 3)
    assert _balance(store, "a") == Decimal("1015")


def test_duplicate_after_a_restart_gets_the_original_reply(store_url: str) -> None:
    registry = registry_of(ALL_ENTITIES)
    dep = message(Account, "a", "deposit", amount="10", command_id="dep-1")
    with Store(store_url, registry) as first_store:
        d = Driver(first_store, ALL_ENTITIES)
        d.run([message(Account, "a", "open", owner="Ada")])
        original = d.reply(dep)
    with Store(store_url, registry) as second_store:
        d = Driver(second_store, ALL_ENTITIES)
        again = d.reply(dep)
        assert _summary(again) == _summary(original) == ("applied", "10", 2)
        assert second_store.last_version("Account/a") == 2
        assert d.runtime.loads == 0  # answered from the outcome, the actor was not even loaded


def test_signals_leave_no_reply_but_dedupe_the_same(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    bump = message(Counter, "c", "bump", kind="signal", command_id="b-1", by=3)
    batch = d.run([bump, bump])
    assert batch.replies == []
    d.run([bump])
    assert store.last_version("Counter/c") == 1
    # An update with the id of a processed signal gets the signal's outcome.
    as_update = bump.model_copy(update={"kind": "update", "reply_to": "local:x"})
    assert _summary(d.reply(as_update)) == ("applied", None, 1)


def test_racing_runtimes_apply_a_command_id_once(store_url: str) -> None:
    """Two runtimes process the same command before either committed: one commit wins."""
    registry = registry_of(ALL_ENTITIES)
    with Store(store_url, registry) as s1, Store(store_url, registry) as s2:
        a, b = Driver(s1, ALL_ENTITIES), Driver(s2, ALL_ENTITIES)
        env = message(Counter, "c", "add", by=5, command_id="once")
        batch_a = a.process([env])
        batch_b = b.process([env])
        s1.commit(batch_a.commit)
        a.runtime.committed(batch_a)
        with pytest.raises(ConcurrencyConflictError):
            s2.commit(batch_b.commit)
        b.runtime.discard(batch_b)
        retry = b.reply(env)
        assert _summary(retry) == ("applied", 5, 1)
        assert s1.last_version("Counter/c") == 1


# -- a second runtime with a stale view ------------------------------------------------


def test_a_stale_runtime_fails_cleanly_and_writes_nothing(store_url: str) -> None:
    registry = registry_of(ALL_ENTITIES)
    with Store(store_url, registry) as s1, Store(store_url, registry) as s2:
        a, b = Driver(s1, ALL_ENTITIES), Driver(s2, ALL_ENTITIES)
        a.run([message(Account, "x", "open", owner="Ada")])
        a.run([message(Account, "x", "deposit", amount="1")])  # a caches Account/x at v2
        b.run([message(Account, "x", "deposit", amount="5")])  # b moves it to v3
        position = s1.max_position()

        stale = a.process(
            [
                message(Account, "y", "open", owner="Yan"),
                message(Account, "x", "deposit", amount="7", command_id="late"),
            ]
        )
        assert [e.version for e in stale.commit.events] == [1, 3]  # x@3 is taken
        with pytest.raises(ConcurrencyConflictError):
            s1.commit(stale.commit)
        a.runtime.discard(stale)
        assert "Account/x" not in a.runtime
        # Nothing of the failed batch is in the store: not y's events, not the outcomes.
        assert s2.max_position() == position
        assert s2.last_version("Account/y") == 0
        assert s2.outcome("late") is None

        # Reloaded, the same commands go through on top of b's write.
        replies = a.replies(
            [
                message(Account, "y", "open", owner="Yan"),
                message(Account, "x", "deposit", amount="7", command_id="late"),
            ]
        )
        assert [_summary(r) for r in replies] == [("applied", None, 1), ("applied", "13", 4)]
        assert _balance(s2, "x") == Decimal("13")


# -- the actor cache ---------------------------------------------------------------------


def test_the_cache_is_bounded_and_evicted_actors_reload(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES, cache_size=3, idle_passivation=None)
    opens = [message(Account, f"a{i}", "open", owner=f"o{i}") for i in range(6)]
    d.run(opens)
    assert d.runtime.cached == 3
    assert [f"Account/a{i}" in d.runtime for i in range(6)] == [False] * 3 + [True] * 3
    assert d.runtime.loads == 6
    for _ in range(2):
        d.run([message(Account, f"a{i}", "deposit", amount="2") for i in range(6)])
        assert d.runtime.cached == 3
        assert [f"Account/a{i}" in d.runtime for i in range(6)] == [False] * 3 + [True] * 3
    # Every deposit saw the right state, including those of evicted (reloaded) actors.
    for i in range(6):
        assert _balance(store, f"a{i}") == Decimal("4")
        assert store.last_version(f"Account/a{i}") == 3
    assert d.runtime.loads == 6 + 3 + 3  # each round reloads the three evicted ones
    # A hot actor is served from memory.
    d.run([message(Account, "a5", "deposit", amount="1")])
    assert d.runtime.loads == 12
    reply = d.reply(message(Account, "a5", "deposit", amount="1"))
    assert (reply.result, reply.version) == ("6", 5)


def test_idle_actors_are_passivated_and_reload_from_snapshots(store: Store) -> None:
    # Idle for longer than a slow commit takes on a loaded machine (the commit itself
    # passivates what has been idle that long).
    d = Driver(store, ALL_ENTITIES, snapshot_every=2, idle_passivation=1.0)
    d.run([message(Counter, "c", "add", by=1) for _ in range(5)])
    assert d.runtime.cached == 1
    time.sleep(1.1)
    assert d.runtime.passivate_idle() == 1
    assert d.runtime.cached == 0
    stream = store.load("Counter/c", snapshot_type="Counter@1")
    assert stream.snapshot is not None and stream.snapshot.originator_version == 5
    assert stream.events == []
    reply = d.reply(message(Counter, "c", "add", by=10))
    assert _summary(reply) == ("applied", 15, 6)
    assert d.runtime.loads == 2


def test_recently_used_actors_survive_passivation(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES, idle_passivation=0.2)
    d.run([message(Counter, "old", "add", by=1)])
    time.sleep(0.25)
    d.run([message(Counter, "new", "add", by=1)])  # committed() passivates "old"
    assert "Counter/old" not in d.runtime
    assert "Counter/new" in d.runtime


def test_forgetting_partitions_drops_their_actors(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([message(Counter, "c", "add", by=1)])
    d.runtime.forget_partitions([1])
    assert "Counter/c" in d.runtime
    d.runtime.forget_partitions([0])
    assert d.runtime.cached == 0


def test_new_actors_of_a_batch_are_loaded_together_not_again_one_by_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new actor's stream is empty; the batch's prefetch answered for it all the same."""
    d = Driver(store, ALL_ENTITIES)
    single: list[str] = []
    load = store.load

    def counted(stream_id: str, **kwargs: object) -> object:
        single.append(stream_id)
        return load(stream_id, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "load", counted)
    d.run([message(Counter, "fresh-1", "add", by=1), message(Counter, "fresh-2", "add", by=2)])
    assert single == []
    assert d.runtime.loads == 2

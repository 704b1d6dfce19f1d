"""Durable timers through Apache Kafka: how late they fire under W1, and what pending ones cost.

One worker process (``bench.timer_worker``: ``entityflow worker`` that also reports its
first assignment and first timer read) runs ``bench.timer_domain`` on the section's
broker, a fresh PostgreSQL schema and topic namespace per run, 16 partitions:

- ``accuracy``: 3,000 ``Sleeper`` entities each get ``arm(delay)`` (a signal; 600 a
  second, so that the arms are no backlog of their own) setting a timer due 1 to 10 s
  after the command is handled; the timer's ``fired`` command returns its lateness,
  ``ctx.now`` of its handling minus the due time, read from the outcome rows. Three
  loads around it: ``idle`` (nothing but the arms), ``W1 updates`` (32 callers awaiting
  deposits to 100 accounts through a reply topic, as in ``kafka``) and ``W1 signals``
  (deposit signals kept 2,000 ahead of the worker's committed position: a saturated
  worker, every batch full). The load runs until 2 s after the last timer can have
  been due (10 s after the last arm was handled), then stops; beside each, the W1
  deposits/s committed meanwhile and how many timers had fired by then (the others
  fire once the load stops, and their lateness shows it);
- ``pending``: the cost of 100,000 timers due hours ahead, written through
  ``Store.commit(Commit(timers=[TimerRow, ...]))`` 500 rows per commit (a batch's worth,
  the rows the runtime would write for ``Sleeper.arm``): the worker's start-up to its
  first assignment and to its first timer read, its RSS (``VmRSS``) once started, the
  timer table's size and the due-timers query itself, each against the same figure
  with no timer pending (the same schema, before seeding). On every store in
  ``--stores`` (SQLite: a file the worker process shares).

Figures are medians of ``--runs`` runs (each run's values beside them).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from actors import Client, EntityCatalog
from actors.envelopes import Envelope
from actors.mailbox.kafka import KafkaMailbox
from actors.mailbox.reply_datagrams import advertised_host
from actors.timers import TimerRequest, timer_row
from api.settings import Settings
from bench.broker import broker_name, section_broker
from bench.options import Options
from bench.stores import store_url
from bench.table import Table
from bench.timer_domain import DOMAIN, TIMER, Sleeper, micros
from bench.timer_worker import MARK
from eventstore import Commit, Store
from eventstore.kafka.io import KafkaSettings, partition_for
from examples.shop import Account

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 16
ACCOUNTS = 100
SLEEPERS = 3_000
DELAY_MS = (1_000, 10_000)
"""Each timer is due this long (uniformly drawn) after its arm command is handled."""
ARM_RATE = 600.0
"""Arm commands sent per second (3,000 over 5 s), in chunks of ARM_CHUNK."""
ARM_CHUNK = 60
WARMUP = 1.0
"""Seconds of load before the timers are set."""
GRACE = 2.0
"""Seconds the load goes on after the last timer can have come due (the last arm was
handled DELAY_MS[1] ago)."""
CALLERS = 32
BACKLOG = 2_000
"""Deposit signals the saturating load keeps sent but not yet committed."""
CHUNK = 500
PENDING = 100_000
SEED_BATCH = 500
PENDING_FROM = timedelta(hours=2)
PENDING_SPREAD = timedelta(hours=24)
SETTLE = 2.0
"""Seconds a started worker idles before its RSS is read."""
QUERIES = 20
LATENESS_TARGET_MS = 200.0
MODES = ("idle", "W1 updates", "W1 signals")
LABELS = {
    "idle": "no other load",
    "W1 updates": f"W1 updates ({CALLERS} callers)",
    "W1 signals": f"W1 signals ({BACKLOG:,} ahead)",
}


@dataclass(frozen=True)
class Accuracy:
    p50_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    w1_rate: float | None
    fired_in_load: int
    """Timers that had fired when the load stopped (GRACE after the last was due)."""


@dataclass(frozen=True)
class Startup:
    assigned_ms: float
    """Process start to the first partitions assigned."""
    refreshed_ms: float
    """Process start to the end of the first timer read after that."""
    refresh_ms: float
    """The first timer read itself (TimerIndex.refresh: the query and holding the rows)."""
    held: int
    rss_mb: float


@dataclass(frozen=True)
class Cost:
    none: Startup
    pending: Startup
    seed_rate: float
    size_none_mb: float
    size_pending_mb: float
    query_none_ms: float
    query_pending_ms: float


# -- the worker process ------------------------------------------------------------------


class _WorkerProcess:
    """A ``bench.timer_worker`` process and the BENCH lines it prints (read on a thread)."""

    def __init__(self, url: str, bootstrap: str, namespace: str) -> None:
        env = {
            **os.environ,
            "ENTITYFLOW_STORE": url,
            "ENTITYFLOW_NAMESPACE": namespace,
            "ENTITYFLOW_PARTITIONS": str(PARTITIONS),
            "ENTITYFLOW_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "bench.timer_worker", "--domain", "bench.timer_domain"]
        self.started = time.time()
        self.proc = subprocess.Popen(
            [*command, "--bootstrap-servers", bootstrap],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self.events.put(json.loads(line[len(MARK) :]))

    def wait_for(self, event: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"the worker process never reported {event!r}")
            try:
                got = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if got["event"] == event:
                return got

    def rss_mb(self) -> float:
        """The process's resident set (VmRSS of /proc/<pid>/status), in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc status")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)


@contextmanager
def _worker(url: str, bootstrap: str, namespace: str) -> Iterator[_WorkerProcess]:
    worker = _WorkerProcess(url, bootstrap, namespace)
    try:
        yield worker
    finally:
        worker.stop()


# -- accuracy under W1 ---------------------------------------------------------------------


class _Counts:
    """Cheap progress reads on the run's PostgreSQL schema, on a connection of its own."""

    def __init__(self, url: str) -> None:
        base, _, schema = url.partition("?schema=")
        self.conn = psycopg.connect(base, autocommit=True)
        self.schema = sql.Identifier(schema)

    def _one(self, query: str, *params: object) -> int:
        row = self.conn.execute(sql.SQL(query).format(s=self.schema), params).fetchone()
        return int(row[0] or 0) if row else 0

    def consumed(self) -> int:
        """Messages the worker has committed past, all partitions (their tracked positions)."""
        return self._one(
            "SELECT sum(notification_id) FROM {s}.entityflow_tracking "
            "WHERE application_name LIKE 'kafka:%%'"
        )

    def outcomes(self, command: str) -> int:
        return self._one("SELECT count(*) FROM {s}.entityflow_commands WHERE command = %s", command)

    def pending_timers(self) -> int:
        return self._one("SELECT count(*) FROM {s}.entityflow_timers")

    def lateness(self, prefix: str) -> list[float]:
        rows = self.conn.execute(
            sql.SQL(
                "SELECT result FROM {s}.entityflow_commands WHERE command = 'fired' "
                "AND address LIKE %s"
            ).format(s=self.schema),
            (f"Sleeper/{prefix}%",),
        ).fetchall()
        return [float(json.loads(r[0])) for r in rows]

    def close(self) -> None:
        self.conn.close()


class _Load:
    """A W1 load on a thread until stopped: deposit signals kept BACKLOG ahead, or CALLERS
    callers awaiting deposits (each sends the next when the last was answered)."""

    def __init__(self, mode: str, client: Client, mailbox: KafkaMailbox, url: str) -> None:
        self.mode, self.client, self.mailbox, self.url = mode, client, mailbox, url
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Load:
        if self.mode != "idle":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(120)
        if self.error is not None:
            raise RuntimeError(f"the {self.mode} load failed") from self.error

    def _run(self) -> None:
        try:
            if self.mode == "W1 signals":
                self._signals()
            else:
                asyncio.run(self._updates())
        except BaseException as exc:
            self.error = exc

    def _signals(self) -> None:
        counts = _Counts(self.url)
        base = counts.consumed()
        try:
            while not self.stop.is_set():
                if self.sent - (counts.consumed() - base) >= BACKLOG:
                    time.sleep(0.01)
                    continue
                futures = [
                    self.mailbox.send(
                        self.client.prepare(
                            Account.deposit, f"acct-{n % ACCOUNTS}", amount=Decimal(1)
                        )
                    )
                    for n in range(self.sent, self.sent + CHUNK)
                ]
                for f in futures:
                    f.result(timeout=60)
                self.sent += CHUNK
        finally:
            counts.close()

    async def _updates(self) -> None:
        async def caller(k: int) -> None:
            n = k
            while not self.stop.is_set():
                deposit = Account.deposit.options(timeout=60)
                await self.client.update(deposit, f"acct-{n % ACCOUNTS}", amount=Decimal(1))
                n += CALLERS

        await asyncio.gather(*(caller(k) for k in range(CALLERS)))


def _percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _accuracy(
    mode: str, seed: int, client: Client, mailbox: KafkaMailbox, url: str, counts: _Counts
) -> Accuracy:
    """Set SLEEPERS timers (ARM_RATE a second) while the mode's load runs, for as long as
    the last one takes to come due and GRACE more; then stop the load and wait for every
    timer to have fired."""
    prefix = f"{mode.rsplit(maxsplit=1)[-1]}-"
    before, armed = counts.outcomes("fired"), counts.outcomes("arm")
    rng = random.Random(seed)
    with _Load(mode, client, mailbox, url):
        time.sleep(WARMUP)
        deposits_before = counts.outcomes("deposit")
        started = time.perf_counter()
        for first in range(0, SLEEPERS, ARM_CHUNK):
            # Paced: a burst of arms would be a backlog of its own, measured instead of W1.
            time.sleep(max(0.0, started + first / ARM_RATE - time.perf_counter()))
            futures = [
                mailbox.send(client.prepare(Sleeper.arm, f"{prefix}{n}", rng.randint(*DELAY_MS)))
                for n in range(first, min(SLEEPERS, first + ARM_CHUNK))
            ]
            for f in futures:
                f.result(timeout=60)
        # Under a backlog the arms are handled late: the last timer is due DELAY_MS[1]
        # after the last arm was handled, not sent.
        deadline = time.monotonic() + 120
        while counts.outcomes("arm") < armed + SLEEPERS:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{mode}: arm commands not all handled after 120 s")
            time.sleep(0.1)
        time.sleep(DELAY_MS[1] / 1000 + GRACE)
        elapsed = time.perf_counter() - started
        deposits = counts.outcomes("deposit") - deposits_before
        fired_in_load = counts.outcomes("fired") - before
    # Each firing's commit deletes its row: done when the table is empty and every fired
    # outcome is there (a timer the load held back fires now, its lateness says how late).
    deadline = time.monotonic() + 120
    while counts.pending_timers() or counts.outcomes("fired") < before + SLEEPERS:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{mode}: timers still pending 120 s after the load stopped")
        time.sleep(0.05)
    late = sorted(counts.lateness(prefix))
    if len(late) != SLEEPERS:
        raise AssertionError(f"{mode}: {len(late)} timers fired, {SLEEPERS} were set")
    return Accuracy(
        p50_ms=statistics.median(late),
        p99_ms=_percentile(late, 0.99),
        max_ms=late[-1],
        min_ms=late[0],
        w1_rate=deposits / elapsed if mode != "idle" else None,
        fired_in_load=fired_in_load,
    )


def _accuracy_run(options: Options, bootstrap: str, run: int) -> dict[str, Accuracy]:
    with store_url("postgres", options.pg) as url:
        namespace = f"benchtimers{os.getpid()}r{run}"
        mailbox = KafkaMailbox(
            KafkaSettings(bootstrap),
            namespace=namespace,
            partitions=PARTITIONS,
            reply_host=advertised_host(Settings().reply_host),
        )
        store = Store(url, DOMAIN.registry())
        client = Client(mailbox, store, EntityCatalog(DOMAIN.entities), default_timeout=120)
        counts = _Counts(url)
        try:
            with _worker(url, bootstrap, namespace) as worker:
                worker.wait_for("refreshed")
                asyncio.run(_open(client))
                return {
                    mode: _accuracy(mode, run * 10 + i, client, mailbox, url, counts)
                    for i, mode in enumerate(MODES)
                }
        finally:
            counts.close()
            client.close()
            mailbox.close()
            store.close()


async def _open(client: Client) -> None:
    await asyncio.gather(
        *(client.update(Account.open, f"acct-{i}", owner="bench") for i in range(ACCOUNTS))
    )


# -- the cost of pending timers ------------------------------------------------------------


def _seed(store: Store) -> float:
    """PENDING timers due hours ahead, as Sleeper.arm sets them, SEED_BATCH per commit."""
    now = datetime.now(UTC)
    step = PENDING_SPREAD / PENDING
    started = time.perf_counter()
    for first in range(0, PENDING, SEED_BATCH):
        rows = []
        for n in range(first, min(PENDING, first + SEED_BATCH)):
            address = f"Sleeper/far-{n}"
            due = now + PENDING_FROM + step * n
            envelope = Envelope(
                address=address, kind="command", name="fired", args={"due_us": micros(due)}
            )
            request = TimerRequest(TIMER, due, envelope)
            partition = partition_for(address.encode(), PARTITIONS)
            rows.append(timer_row(address, partition, request))
        store.commit(Commit(timers=rows))
    return PENDING / (time.perf_counter() - started)


def _table_mb(kind: str, url: str) -> float:
    if kind == "postgres":
        base, _, schema = url.partition("?schema=")
        with psycopg.connect(base) as conn:
            row = conn.execute(
                "SELECT pg_total_relation_size(%s::regclass)", (f'"{schema}".entityflow_timers',)
            ).fetchone()
        return int(row[0]) / 1e6 if row else 0.0
    import sqlite3

    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name IN "
            "(SELECT name FROM sqlite_master WHERE tbl_name = 'ef_timers')"
        ).fetchone()
    return int(row[0] or 0) / 1e6 if row else 0.0


def _due_query_ms(store: Store) -> float:
    """The read a worker owning every partition makes: timers due within the horizon."""
    took = []
    for _ in range(QUERIES):
        t = time.perf_counter()
        store.due_timers(range(PARTITIONS), until=datetime.now(UTC) + timedelta(seconds=60))
        took.append((time.perf_counter() - t) * 1000)
    return statistics.median(took)


def _startup(url: str, bootstrap: str, namespace: str) -> Startup:
    with _worker(url, bootstrap, namespace) as worker:
        assigned = worker.wait_for("assigned")
        refreshed = worker.wait_for("refreshed")
        time.sleep(SETTLE)
        rss = worker.rss_mb()
    return Startup(
        assigned_ms=(assigned["t"] - worker.started) * 1000,
        refreshed_ms=(refreshed["t"] - worker.started) * 1000,
        refresh_ms=float(refreshed["ms"]),
        held=int(refreshed["held"]),
        rss_mb=rss,
    )


def _cost_run(kind: str, options: Options, bootstrap: str, run: int) -> Cost:
    with store_url(kind, options.pg) as url:
        store = Store(url, DOMAIN.registry())
        try:
            name = f"benchtimercost{os.getpid()}{kind[:2]}r{run}"
            size_none = _table_mb(kind, url)
            query_none = _due_query_ms(store)
            none = _startup(url, bootstrap, f"{name}a")
            seed_rate = _seed(store)
            if store.count_timers() != PENDING:
                raise AssertionError(f"{store.count_timers()} timers pending, {PENDING} seeded")
            size_pending = _table_mb(kind, url)
            query_pending = _due_query_ms(store)
            pending = _startup(url, bootstrap, f"{name}b")
            if store.count_timers() != PENDING:
                raise AssertionError("the worker fired (or lost) timers due hours ahead")
            return Cost(
                none, pending, seed_rate, size_none, size_pending, query_none, query_pending
            )
        finally:
            store.close()


# -- the table -----------------------------------------------------------------------------


def _runs(values: Sequence[float]) -> str:
    def one(v: float) -> str:
        if isinstance(v, int) or abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.1f}" if abs(v) >= 1 else f"{v:.3f}"

    return " / ".join(one(v) for v in values)


def _row(table: Table, label: str, values: Sequence[float]) -> float:
    median = statistics.median(values)
    shown = round(median) if all(isinstance(v, int) for v in values) else median
    table.add(label, shown, _runs(values))
    return median


def run(options: Options) -> Table:
    table = Table(
        f"Durable timers: {SLEEPERS:,} entity timers due {DELAY_MS[0] / 1000:g}-"
        f"{DELAY_MS[1] / 1000:g} s after being set, lateness = fired command handled "
        f"(ctx.now) - due, under no load / W1 ({ACCOUNTS} accounts); {PENDING:,} timers "
        f"pending hours ahead; one worker process, {PARTITIONS} partitions, "
        f"{broker_name(options)} (median of {options.runs} runs)",
        ["measure", "median", "runs"],
    )
    load_before = os.getloadavg()[0]
    costs: dict[str, list[Cost]] = {}
    with section_broker(options) as bootstrap:
        accuracy = [_accuracy_run(options, bootstrap, n) for n in range(options.runs)]
        for kind in options.stores:
            costs[kind] = [_cost_run(kind, options, bootstrap, n) for n in range(options.runs)]
    p99s: dict[str, float] = {}
    for mode in MODES:
        runs = [r[mode] for r in accuracy]
        what = f"PostgreSQL, {LABELS[mode]}"
        _row(table, f"{what}: lateness p50 ms", [r.p50_ms for r in runs])
        p99s[mode] = _row(table, f"{what}: lateness p99 ms", [r.p99_ms for r in runs])
        _row(table, f"{what}: lateness max ms", [r.max_ms for r in runs])
        _row(table, f"{what}: lateness min ms", [r.min_ms for r in runs])
        rates = [r.w1_rate for r in runs if r.w1_rate is not None]
        if rates:
            _row(table, f"{what}: W1 deposits/s meanwhile", rates)
            _row(
                table,
                f"{what}: timers fired before the load stopped (of {SLEEPERS:,})",
                [r.fired_in_load for r in runs],
            )
    for kind, cost_runs in costs.items():
        store = "PostgreSQL" if kind == "postgres" else "SQLite"
        per: list[tuple[str, Callable[[Startup], float]]] = [
            ("worker start -> first assignment ms", lambda s: s.assigned_ms),
            ("worker start -> first timer read done ms", lambda s: s.refreshed_ms),
            ("first timer read (TimerIndex.refresh) ms", lambda s: s.refresh_ms),
            ("timers held in memory after it", lambda s: s.held),
            ("worker RSS MB", lambda s: s.rss_mb),
        ]
        for label, get in per:
            _row(table, f"{store}, no timers: {label}", [get(r.none) for r in cost_runs])
            _row(
                table, f"{store}, {PENDING:,} pending: {label}", [get(r.pending) for r in cost_runs]
            )
        _row(table, f"{store}, no timers: timer table MB", [r.size_none_mb for r in cost_runs])
        _row(
            table,
            f"{store}, {PENDING:,} pending: timer table MB",
            [r.size_pending_mb for r in cost_runs],
        )
        _row(
            table, f"{store}, no timers: due-timers query ms", [r.query_none_ms for r in cost_runs]
        )
        _row(
            table,
            f"{store}, {PENDING:,} pending: due-timers query ms",
            [r.query_pending_ms for r in cost_runs],
        )
        _row(table, f"{store}: seeding, timer rows/s", [r.seed_rate for r in cost_runs])
    table.notes.append(
        "Measured: timer lateness from the outcomes of the fired commands, under each load; "
        f"the {PENDING:,} pending timers are seeded through Store.commit(Commit(timers=[TimerRow"
        f", ...])), {SEED_BATCH} per commit (not through arm commands); start-up is from the "
        "worker process's launch (imports, topics, group join included); RSS is VmRSS "
        f"{SETTLE:g} s after the first timer read; the due-timers query is Store.due_timers over "
        f"all {PARTITIONS} partitions, 60 s horizon, from the bench process"
    )
    table.notes.append(
        f"machine load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} cores shared with everything else running)"
    )
    for mode in MODES:
        table.target(
            p99s[mode] <= LATENESS_TARGET_MS,
            f"timer lateness p99 {p99s[mode]:.1f} ms <= {LATENESS_TARGET_MS:.0f} ms "
            f"({LABELS[mode]})",
        )
    return table

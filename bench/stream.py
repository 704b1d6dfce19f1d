"""The event stream: end-to-end lag under W1 load, and relay throughput.

- ``lag``: one ``entityflow worker`` process (which runs the relay, as deployed) on a fresh
  PostgreSQL schema and the section's Apache Kafka; the bench sends W1 (10,000 deposit
  signals to 100 accounts, as fast as the broker acknowledges them) and a subscriber in the bench
  process (the ``subscribe`` helper) notes, for each Deposited event, the time from the
  event's recorded timestamp (set by the handler, just before its batch commits) to its
  arrival. The table shows p50/p99/max of that lag and the end-to-end rate (commands/s
  from the first send to the last event seen): the relay keeps up when that rate is W1's.
- ``relay``: 50,000 events already in the store, one relay catching up from nothing:
  events/s from its first batch to the last acknowledged one.

Figures are medians of ``--runs`` runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg

from actors import Client, EntityCatalog
from actors.mailbox.kafka import KafkaMailbox
from bench.broker import broker_name, section_broker
from bench.options import Options
from bench.stores import store_url
from bench.table import Table
from eventstore import Commit, EventRegistry, RecordedEvent, Store
from eventstore.kafka.io import KafkaSettings
from eventstore.stream.relay import Relay, RelayOptions
from eventstore.stream.subscriptions import Subscription
from examples.shop import ENTITIES, Account
from examples.shop.accounts import Deposited
from examples.shop.inventory import Restocked

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = 100
COMMANDS = 10_000
PARTITIONS = 16
BACKLOG = 50_000
PACES: tuple[float | None, ...] = (None, 1_000.0)
"""W1 as fast as it goes, and W1 paced at a steady 1,000 commands/s."""


@dataclass(frozen=True)
class LagRun:
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    recorded_p50_ms: float
    recorded_p99_ms: float


class _Arrivals:
    """What the subscriber process saw, read from the file it appends to.

    Each line: arrival time, event timestamp, entity, version (one Deposited event).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[tuple[float, float, str, int]] = []
        self._offset = 0

    def _refresh(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode().splitlines():
            arrived, recorded, entity, version = line.split(" ")
            self.seen.append((float(arrived), float(recorded), entity, int(version)))

    def since(self, started: float) -> list[tuple[float, float, str, int]]:
        self._refresh()
        return [s for s in self.seen if s[1] >= started]


def subscriber(bootstrap: str, namespace: str, path: str) -> None:
    """The subscribing service (its own process): note when each Deposited event arrives."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sub = Subscription(
        KafkaSettings(bootstrap),
        EventRegistry(),
        (Deposited,),
        group_id="bench-lag",
        namespace=namespace,
    )
    with sub, open(path, "a") as out:
        while not stop.is_set():
            lines = []
            for m in sub.poll(0.05):
                lines.append(f"{time.time()} {m.timestamp.timestamp()} {m.entity} {m.version}\n")
                sub.delivered(m)
            out.write("".join(lines))
            out.flush()
            sub.commit()
            if sub.stats.partitions and not Path(path + ".ready").exists():
                Path(path + ".ready").touch()


_TRIGGER = """
CREATE TABLE {schema}.bench_inserted (id text, version bigint, at double precision);
CREATE FUNCTION {schema}.bench_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {schema}.bench_inserted
    SELECT originator_id, originator_version, extract(epoch from clock_timestamp())
    FROM new_rows;
  RETURN NULL;
END $$;
CREATE TRIGGER bench_note AFTER INSERT ON {schema}.entityflow_events
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {schema}.bench_note();
"""


def _note_inserts(url: str) -> None:
    """Bench only: note when each event row is inserted (inside its commit, just before it)."""
    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(_TRIGGER.format(schema=f'"{schema}"').encode())


def _inserted(url: str, since: float) -> dict[tuple[str, int], float]:
    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base) as conn:
        rows = conn.execute(
            f'SELECT id, version, at FROM "{schema}".bench_inserted WHERE at >= %s'.encode(),
            (since - 1,),
        ).fetchall()
    return {(str(r[0]), int(r[1])): float(r[2]) for r in rows}


@contextmanager
def _processes(url: str, bootstrap: str, namespace: str, relay_in_worker: bool) -> Iterator[None]:
    """One worker process, running the relay itself or beside an `entityflow relay` process."""
    env = {
        **os.environ,
        "ENTITYFLOW_STORE": url,
        "ENTITYFLOW_NAMESPACE": namespace,
        "ENTITYFLOW_PARTITIONS": str(PARTITIONS),
        "ENTITYFLOW_LOG_LEVEL": "WARNING",
        "ENTITYFLOW_RELAY": "true" if relay_in_worker else "false",
    }
    shop = ["--domain", "examples.shop"]
    commands = [["worker", *shop]] + ([] if relay_in_worker else [["relay", *shop]])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "api.cli", *command, "--bootstrap-servers", bootstrap],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in commands
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)


def _lag_run(
    client: Client, mailbox: KafkaMailbox, arrivals: _Arrivals, url: str, pace: float | None
) -> LagRun:
    """Send W1's deposits (as fast as acknowledged, or ``pace`` per second); measure lags."""
    started = time.time()
    futures = []
    for n in range(COMMANDS):
        futures.append(
            mailbox.send(client.prepare(Account.deposit, f"acct-{n % ACCOUNTS}", amount=Decimal(1)))
        )
        if pace is not None and n % 20 == 19:
            ahead = started + (n + 1) / pace - time.time()
            if ahead > 0:
                time.sleep(ahead)
    for f in futures:
        f.result(timeout=120)
    deadline = time.monotonic() + 300
    while len(arrivals.since(started)) < COMMANDS:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(arrivals.since(started))} of {COMMANDS} events seen")
        time.sleep(0.02)
    seen = arrivals.since(started)
    inserted = _inserted(url, started)
    committed = sorted(arrived - inserted[(e, v)] for arrived, _, e, v in seen)
    recorded = sorted(arrived - at for arrived, at, _, _ in seen)
    last = max(s[0] for s in seen)
    return LagRun(
        COMMANDS / (last - started),
        _pct(committed, 0.5),
        _pct(committed, 0.99),
        committed[-1] * 1e3,
        _pct(recorded, 0.5),
        _pct(recorded, 0.99),
    )


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3


def _lag(
    options: Options, bootstrap: str, relay_in_worker: bool
) -> dict[float | None, list[LagRun]]:
    """Lag runs per pace (None: W1 at full rate), on one worker, broker and subscriber."""
    runs: dict[float | None, list[LagRun]] = {pace: [] for pace in PACES}
    with (
        store_url("postgres", options.pg) as url,
        tempfile.TemporaryDirectory(prefix="entityflow-stream-") as tmp,
    ):
        namespace = f"stream{os.getpid()}"
        kafka = KafkaSettings(bootstrap)
        mailbox = KafkaMailbox(kafka, namespace=namespace, partitions=PARTITIONS)
        catalog = EntityCatalog(ENTITIES)
        registry = EventRegistry()
        for spec in catalog:
            registry.merge(spec.registry)
        store = Store(url, registry)
        _note_inserts(url)
        client = Client(mailbox, store, catalog, default_timeout=120)
        path = Path(tmp) / "arrivals.txt"
        path.touch()
        arrivals = _Arrivals(path)
        consumer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from bench.stream import subscriber; subscriber(*sys.argv[1:])",
                bootstrap,
                namespace,
                str(path),
            ],
            cwd=ROOT,
        )
        try:
            with _processes(url, bootstrap, namespace, relay_in_worker):
                asyncio.run(_open(client))
                deadline = time.monotonic() + 60
                while not Path(f"{path}.ready").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                _lag_run(client, mailbox, arrivals, url, None)  # warm-up: caches, connections
                for _ in range(options.runs):
                    for pace in PACES:
                        runs[pace].append(_lag_run(client, mailbox, arrivals, url, pace))
        finally:
            consumer.terminate()
            consumer.wait(60)
            client.close()
            mailbox.close()
            store.close()
    return runs


async def _open(client: Client) -> None:
    await asyncio.gather(
        *(client.update(Account.open, f"acct-{i}", owner="bench") for i in range(ACCOUNTS))
    )


def _relay_run(options: Options, bootstrap: str) -> float:
    with store_url("postgres", options.pg) as url, Store(url, EventRegistry([Restocked])) as store:
        skus = [f"sku-{n}" for n in range(1_000)]
        per_sku = BACKLOG // len(skus)
        for version in range(1, per_sku + 1):
            events = [
                RecordedEvent(f"InventoryItem/{sku}", version, Restocked(quantity=version))
                for sku in skus
            ]
            store.commit(Commit(events=events))
        target = store.max_position()
        first: list[float] = []
        relay = Relay(
            store,
            KafkaSettings(bootstrap),
            RelayOptions(namespace=f"relay{uuid.uuid4().hex[:8]}", partitions=PARTITIONS),
            on_batch=lambda records: first.append(time.perf_counter()) if not first else None,
        ).start()
        try:
            deadline = time.monotonic() + 300
            while relay.stats.position < target:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"relay reached {relay.stats.position} of {target}")
                time.sleep(0.005)
            done = time.perf_counter()
        finally:
            relay.close()
        return BACKLOG / (done - first[0])


def run(options: Options) -> Table:
    table = Table(
        f"Event stream: W1 ({COMMANDS:,} deposit signals, {ACCOUNTS} accounts) through one "
        f"worker process running the relay, PostgreSQL, {broker_name(options)}, a subscriber "
        "process (subscribe helper); lag = event row committed -> seen by the subscriber "
        f"(and, in brackets, from the event's recorded time); relay catching up a "
        f"{BACKLOG:,}-event backlog (median of {options.runs} runs)",
        ["measure", "median", "runs"],
    )
    load_before = os.getloadavg()[0]
    with section_broker(options) as bootstrap:
        lag = _lag(options, bootstrap, relay_in_worker=True)
        relay_rates = [_relay_run(options, bootstrap) for _ in range(options.runs)]
    full = lag[None]
    rate = statistics.median(r.rate for r in full)
    for pace, runs in lag.items():
        what = "W1 full rate" if pace is None else f"W1 paced at {pace:,.0f}/s"
        table.add(
            f"{what}: commands/s send -> seen",
            statistics.median(r.rate for r in runs),
            _runs(r.rate for r in runs),
        )
        for label, field in (
            ("lag p50 ms", "p50_ms"),
            ("lag p99 ms", "p99_ms"),
            ("lag max ms", "max_ms"),
            ("(from recorded) p50 ms", "recorded_p50_ms"),
            ("(from recorded) p99 ms", "recorded_p99_ms"),
        ):
            values = [float(getattr(r, field)) for r in runs]
            table.add(f"{what}: {label}", statistics.median(values), _runs(values))
    relay_rate = statistics.median(relay_rates)
    table.add("relay throughput, events/s (backlog)", relay_rate, _runs(relay_rates))
    table.notes.append(
        f"machine load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} cores shared with everything else running)"
    )
    for pace, runs in lag.items():
        p99 = statistics.median(r.p99_ms for r in runs)
        what = "full rate" if pace is None else f"{pace:,.0f}/s"
        table.target(p99 <= 100, f"lag p99 {p99:.1f} ms <= 100 ms under W1 ({what})")
    table.target(
        relay_rate >= rate,
        f"relay {relay_rate:,.0f} events/s keeps up with W1's {rate:,.0f} commands/s",
    )
    return table


def _runs(values: Iterator[float] | list[float]) -> str:
    return " / ".join(f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in values)

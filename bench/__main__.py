"""``python -m bench [section ...] [flags]``: run benchmark sections and print their tables.

With no section, the default ones run (those that need nothing but the database). Add a
workload by writing a module with ``run(options) -> Table`` and listing it in SECTIONS.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench import (
    activities,
    broker,
    children,
    http_sagas,
    http_workloads,
    inprocess,
    kafka,
    peers,
    rehydration,
    runs,
    stream,
    sustained,
    timers,
    tracing,
    tracing_http,
)
from bench.options import Options
from bench.stores import DEFAULT_PG, postgres_reachable
from bench.table import Table


@dataclass(frozen=True)
class Section:
    run: Callable[[Options], Table]
    help: str
    default: bool = True


SECTIONS: dict[str, Section] = {
    "inprocess": Section(inprocess.run, "in-process command throughput (signals, updates)"),
    "rehydration": Section(rehydration.run, "cold load time versus history length"),
    "broker": Section(
        broker.run, "Apache Kafka alone: ack and hop latency versus partition size", default=False
    ),
    "kafka": Section(
        kafka.run, "W1 through the broker: 1 and 2 worker processes (PostgreSQL)", default=False
    ),
    "http": Section(
        http_workloads.run, "W1/W2 over HTTP: API and worker processes, broker", default=False
    ),
    "stream": Section(stream.run, "event stream: lag under W1, relay events/s", default=False),
    "sagas": Section(http_sagas.run, "W3 order sagas over HTTP: API + worker", default=False),
    "sustained": Section(
        sustained.run, "W1 updates over HTTP for --seconds, per 30 s window", default=False
    ),
    "activities": Section(
        activities.run, "activities/s and one activity's latency (Kafka, PostgreSQL)", default=False
    ),
    "timers": Section(
        timers.run,
        "durable timers: lateness under W1, cost of 100,000 pending (Kafka)",
        default=False,
    ),
    "children": Section(
        children.run, "fan-out: one parent, 1,000 children of 10 steps (in-process)", default=False
    ),
    "runs": Section(
        runs.run, "continue-as-new: load after 100 runs vs the first (in-process)", default=False
    ),
    "tracing": Section(
        tracing.run, "what tracing costs: in-process W1 updates, off and on", default=False
    ),
    "tracing-http": Section(
        tracing_http.run,
        "what tracing costs over HTTP: W1 updates, API + worker processes, off and on",
        default=False,
    ),
    "peers": Section(
        peers.run, "entityflow beside Restate on the shared W1-W3 driver", default=False
    ),
}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("_", "")) for part in text.split(",") if part)


def parse(argv: list[str]) -> tuple[list[str], Options, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="entityflow benchmarks; prints one Markdown table per section.",
        epilog="sections: " + "; ".join(f"{name}: {s.help}" for name, s in SECTIONS.items()),
    )
    parser.add_argument("sections", nargs="*", metavar="section", help="default: all default ones")
    parser.add_argument("--runs", type=int, default=3, help="runs per throughput figure")
    parser.add_argument(
        "--stores", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL base URL")
    parser.add_argument(
        "--sizes", type=_ints, default=(10, 1_000, 10_000, 100_000), help="history lengths"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="a running Kafka cluster (host:port) instead of one Apache Kafka per section",
    )
    parser.add_argument(
        "--seconds", type=float, default=300.0, help="length of the sustained W1 run"
    )
    parser.add_argument(
        "--peers", default=Options.peers, help="the shared bench folder (peers section)"
    )
    parser.add_argument(
        "--only", default="W1,W2,W3", help="workloads of the peers section (W1,W2,W3)"
    )
    args = parser.parse_args(argv)
    stores = tuple(s for s in args.stores.split(",") if s)
    bad_sections = set(args.sections) - set(SECTIONS)
    if bad_sections:
        parser.error(f"unknown section(s) {sorted(bad_sections)}; known: {', '.join(SECTIONS)}")
    unknown = set(stores) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown store(s) {sorted(unknown)}")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes needs one or more positive history lengths")
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    sections = list(dict.fromkeys(args.sections)) or [n for n, s in SECTIONS.items() if s.default]
    if args.seconds < 30:
        parser.error("--seconds must be at least 30 (one window)")
    options = Options(
        runs=args.runs,
        stores=stores,
        pg=args.pg,
        sizes=args.sizes,
        bootstrap=args.bootstrap,
        seconds=args.seconds,
        peers=args.peers,
        only=tuple(w for w in args.only.split(",") if w),
    )
    return sections, options, args.check


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    sections, options, check = parse(sys.argv[1:] if argv is None else argv)
    if "postgres" in options.stores:
        why = postgres_reachable(options.pg)
        if why is not None:
            print(f"PostgreSQL at {options.pg} is not reachable, skipping it: {why}\n")
            stores = tuple(s for s in options.stores if s != "postgres")
            options = dataclasses.replace(options, stores=stores)
    missed: list[str] = []
    for name in sections:
        started = time.perf_counter()
        table = SECTIONS[name].run(options)
        print(table.render())
        print(f"\n({name}: {time.perf_counter() - started:.1f} s)\n", flush=True)
        missed += table.failed
    if missed:
        print("Missed targets:\n" + "\n".join(f"- {m}" for m in missed))
    return 1 if check and missed else 0


if __name__ == "__main__":
    sys.exit(main())

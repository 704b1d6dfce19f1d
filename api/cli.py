"""The ``entityflow`` command line: one function per subcommand.

``entityflow worker`` runs a worker process; ``serve`` and ``dev`` run the API (the latter
with the embedded broker and a worker in the same process). Each subcommand is a
``cmd_<name>(args)`` function registered in ``_parser``; errors are printed as one plain
sentence that says what to do next, and the exit code is non-zero. The operator's commands
(``workflows``, ``deadletters``) talk to a running API: see ``operator_cli.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from api.app import AppParts, broker_check, create_app
from api.openapi.asyncapi import stream_schemas_json
from api.operator_cli import operator_parsers
from api.server import serve
from api.settings import Settings
from api.wiring import (
    DomainLoadError,
    build_host,
    build_relay,
    domain_registry,
    kafka_settings,
    load_domain,
    open_mailbox,
    open_store,
    serve_worker_metrics,
)
from eventstore import EventRegistry, EventStoreError
from eventstore.kafka import ApacheKafka, local_broker
from eventstore.stream.relay import Relay, StreamTopics
from eventstore.stream.tail import StreamFilter, TailOptions, tail
from eventstore.tracing import configure_tracing
from sagas import ActivityWorker, Domain
from sagas.replay_check import check_histories, export_histories, file_histories, stored_histories

log = logging.getLogger("entityflow.cli")
DEFAULT_DOMAIN = "examples.shop"
"""What `entityflow dev` runs when not told otherwise; the other commands must be told."""
DOMAIN_HELP = "the module exporting DOMAIN (or ENTITIES and WORKFLOWS), e.g. myapp.domain"


def _settings() -> Settings:
    return Settings()


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python logs every failed connection attempt; entityflow says it once, plainly.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def _stop_on_signals(stop: Callable[[], None]) -> threading.Event:
    stopped = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, finishing the batch in hand", signal.Signals(signum).name)
        stopped.set()
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stopped


def _tune_gc() -> None:
    """Collect garbage rarely, and never scan what start-up built.

    A service process holds a few hundred thousand long-lived objects (modules, pydantic
    schemas, routes); with the default thresholds the collector walks them many times a
    second under load, and each full pass is a pause every in-flight request waits out
    (p99 latency). Freezing moves them out of the collector's view; a higher first
    threshold makes young collections rarer but still bounded.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _check_activities_only(settings: Settings, domain: Domain) -> None:
    """An activities-only worker that could run nothing is a mistake: say so at start."""
    if not settings.activities_only:
        return
    if settings.activity_concurrency == 0:
        raise ValueError(
            "ENTITYFLOW_ACTIVITIES_ONLY=true with ENTITYFLOW_ACTIVITY_CONCURRENCY=0 would run "
            "nothing: give the worker activity threads, or drop ENTITYFLOW_ACTIVITIES_ONLY"
        )
    if not domain.activities:
        raise ValueError(
            "ENTITYFLOW_ACTIVITIES_ONLY=true, but the domain lists no activities: list them "
            "in Domain(..., activities=[...]) (or ACTIVITIES), or drop ENTITYFLOW_ACTIVITIES_ONLY"
        )


def cmd_worker(args: argparse.Namespace) -> int:
    """Join the worker group and process the partitions Kafka assigns to this process
    (with ``ENTITYFLOW_ACTIVITIES_ONLY``: take activity tasks only)."""
    settings = _settings()
    _setup_logging(settings)
    domain = load_domain(args.domain)
    _check_activities_only(settings, domain)
    entities = not settings.activities_only
    mailbox = open_mailbox(settings, args.bootstrap_servers)
    host = build_host(settings, domain, mailbox=mailbox, run_worker=entities, run_activities=True)
    relay = None
    if entities:  # the relay runs beside the entities whose events it publishes
        relay = _worker_relay(settings, host.store.registry, args.bootstrap_servers)
    metrics = serve_worker_metrics(settings, host, relay)
    worker = host.worker
    activities = host.activities

    def stop() -> None:  # both loops wind down together; the finally below joins them
        worker.stop()
        if activities is not None:
            activities.request_stop()

    stopped = _stop_on_signals(stop)
    _tune_gc()
    if activities is not None:
        activities.start()
    print(
        f"entityflow worker: store {host.store.url}, mailbox {mailbox.name}, "
        f"{f'group {settings.group()}' if entities else 'no entity partitions (activities only)'}"
        f"{f' as {settings.worker_id}' if settings.worker_id else ''}"
        f"{_activities_line(activities)}"
        f"{f', metrics {metrics.url(settings.worker_metrics_host)}' if metrics else ''}"
        "; Ctrl-C to stop",
        flush=True,
    )
    try:
        if entities:
            worker.run()
        else:
            stopped.wait()
    finally:
        if metrics is not None:
            metrics.close()
        if activities is not None:
            activities.stop()
        _close_relay(relay)
        host.client.close()
        mailbox.close()
        host.store.close()
    print(f"entityflow worker stopped: {worker.stats.summary()}", flush=True)
    return 0


def _activities_line(activities: ActivityWorker | None) -> str:
    if activities is None:
        return ", no activities"
    names = ", ".join(sorted(activities.activities))
    return f", activities {names} ({activities.concurrency} at once)"


def _port(args: argparse.Namespace, settings: Settings) -> int:
    return int(args.port if args.port is not None else settings.api_port)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP API alone, against the configured store and Kafka cluster."""
    settings = _settings()
    _setup_logging(settings)
    if args.bootstrap_servers:
        settings = settings.model_copy(update={"kafka_bootstrap_servers": args.bootstrap_servers})
    app = create_app(settings, load_domain(args.domain))
    host, port = args.host or settings.api_host, _port(args, settings)
    _tune_gc()
    print(
        f"entityflow serve: API on http://{host}:{port} (docs: http://{host}:{port}/docs); "
        f"store {settings.store}, Kafka {settings.kafka_bootstrap_servers}; Ctrl-C to stop",
        flush=True,
    )
    serve(app, host, port, log_level=settings.log_level)
    return 0


def _say(line: str) -> None:
    print(f"entityflow dev: {line}", flush=True)


def cmd_dev(args: argparse.Namespace) -> int:
    """Everything on one machine: a local broker, a worker and the API, example loaded."""
    settings = _settings()
    _setup_logging(settings)
    domain = load_domain(args.domain)
    with contextlib.ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap_servers
        about = ""
        if not bootstrap:
            broker = local_broker(
                Path(settings.dev_kafka_dir),
                port=settings.dev_kafka_port,
                controller_port=settings.dev_kafka_port + 1,
                say=_say,
            )
            if isinstance(broker, ApacheKafka):
                _say(f"starting Apache Kafka on port {broker.port} (data in {broker.home})")
                about = f" (Apache Kafka, data kept in {broker.home})"
            else:
                about = " (tansu, memory only: a restart loses queued commands)"
            broker.start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
        settings = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
        mailbox = open_mailbox(settings)
        stack.callback(mailbox.close)
        host = build_host(settings, domain, mailbox=mailbox)
        stack.callback(host.stop)
        host.start()
        relay = _worker_relay(settings, host.store.registry)
        stack.callback(_close_relay, relay)
        worker_metrics = serve_worker_metrics(settings, host, relay, port=0)
        assert worker_metrics is not None
        stack.callback(worker_metrics.close)
        parts = AppParts.from_host(host, settings)
        app = create_app(replace(parts, checks={"broker": broker_check(settings)}))
        api_host, port = args.host or settings.api_host, _port(args, settings)
        _tune_gc()
        url = f"http://{api_host}:{port}"
        names = ", ".join(c.__name__ for c in domain.entities)
        print(
            f"entityflow dev is running ({args.domain} loaded)\n"
            f"  API docs  {url}/docs   (entities: {names})\n"
            f"  OpenAPI   {url}/openapi.json\n"
            f"  health    {url}/readyz   metrics {url}/metrics (API), "
            f"{worker_metrics.url(settings.worker_metrics_host)} (worker)\n"
            f"  store     {host.store.url}\n"
            f"  broker    {bootstrap}{about}\n"
            f"  e.g.      curl -X POST {url}/entities/Account/acct-7/updates/open "
            "-H 'content-type: application/json' -d '{\"owner\": \"Ada\"}'\n"
            "Ctrl-C to stop.",
            flush=True,
        )
        serve(app, api_host, port, log_level=settings.log_level)
    return 0


# -- the event stream: relay, tail, schemas ---------------------------------------------


def _worker_relay(
    settings: Settings, registry: EventRegistry, bootstrap_servers: str | None = None
) -> Relay | None:
    """The relay a worker runs beside it (standby unless it holds the namespace's lease)."""
    servers = bootstrap_servers or settings.kafka_bootstrap_servers
    if not settings.relay or servers in (None, "memory"):
        return None
    return build_relay(settings, registry, bootstrap_servers).start()


def _close_relay(relay: Relay | None) -> None:
    if relay is not None:
        relay.close()
        relay.store.close()


def cmd_relay(args: argparse.Namespace) -> int:
    """Publish every committed event to the namespace's event stream (one active relay)."""
    settings = _settings()
    _setup_logging(settings)
    relay = build_relay(settings, domain_registry(load_domain(args.domain)), args.bootstrap_servers)
    _stop_on_signals(relay.stop)
    _tune_gc()
    print(
        f"entityflow relay: store {relay.store.url} -> topic {relay.topics.events}; "
        "active once it holds the namespace's lease; Ctrl-C to stop",
        flush=True,
    )
    try:
        relay.run()
    finally:
        _close_relay(relay)
    print(f"entityflow relay stopped after {relay.stats.published} events", flush=True)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the live event stream, one readable line per event (or JSON with --json)."""
    settings = _settings()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    if args.count is not None and args.count < 1:
        raise ValueError("--count must be at least 1")
    stop = threading.Event()
    _stop_on_signals(stop.set)
    tail(
        kafka_settings(settings, args.bootstrap_servers),
        StreamTopics(settings.namespace).events,
        StreamFilter.of(args.type or (), args.entity),
        TailOptions(args.from_beginning, args.json, args.count, args.seconds, settings.partitions),
        out=lambda line: print(line, flush=True),
        err=lambda line: print(line, file=sys.stderr, flush=True),
        stop=stop,
    )
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    """Write the AsyncAPI document of the event stream, or every event's JSON Schema."""
    settings = _settings()
    domain = load_domain(args.domain)
    text = stream_schemas_json(settings, domain, args.format)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 0


def _workflows(domain: Any, names: Sequence[str] | None) -> list[Any]:
    chosen = list(domain.workflows)
    if names:
        known = {wf.name: wf for wf in chosen}
        missing = [n for n in names if n not in known]
        if missing:
            raise ValueError(
                f"the domain has no workflow type {', '.join(missing)}; it has "
                + (", ".join(sorted(known)) or "none")
            )
        chosen = [known[n] for n in names]
    if not chosen:
        raise ValueError("the domain has no workflows to check")
    return chosen


def cmd_replay_check(args: argparse.Namespace) -> int:
    """Replay stored (or exported) histories through the current code; non-zero on any
    divergence, so a deploy can be gated on it."""
    domain = load_domain(args.domain)
    workflows = _workflows(domain, args.type)
    registry = domain_registry(domain)
    store = None
    if args.from_dir:
        histories = file_histories(Path(args.from_dir), workflows, registry)
        source = args.from_dir
    else:
        store = open_store(_settings(), registry)
        histories = stored_histories(store, workflows, sample=args.sample)
        source = store.url

    def progress(n: int) -> None:
        if n % 500 == 0:
            print(f"  {n} histories replayed...", flush=True)

    print(f"entityflow replay-check: replaying histories from {source}", flush=True)
    try:
        report = check_histories(histories, progress)
    finally:
        if store is not None:
            store.close()
    for d in report.divergences:
        print(f"DIVERGES {d.describe()}")
    checked = ", ".join(f"{n} {name}" for name, n in sorted(report.checked.items())) or "none"
    if report.ok:
        print(f"entityflow replay-check: all {report.total} histories replay ({checked})")
        return 0
    print(
        f"entityflow replay-check: {len(report.divergences)} of {report.total} histories do "
        f"not replay ({checked}); branch the change with ctx.patched(...) or keep the old code"
    )
    return 1


def cmd_export_history(args: argparse.Namespace) -> int:
    """Write workflow histories as JSON files (for replay-check elsewhere, e.g. in CI)."""
    domain = load_domain(args.domain)
    workflows = _workflows(domain, args.type)
    with open_store(_settings(), domain_registry(domain)) as store:
        written = export_histories(
            stored_histories(store, workflows, sample=args.sample), Path(args.to)
        )
    print(f"entityflow export-history: wrote {written} histories under {args.to}")
    return 0


def _history_parsers(sub: Any) -> None:
    check = sub.add_parser("replay-check", help="replay workflow histories through the code")
    export = sub.add_parser("export-history", help="write workflow histories as JSON files")
    for p in (check, export):
        p.add_argument("--domain", default=None, help=DOMAIN_HELP)
        p.add_argument("--type", action="append", help="only this workflow type (repeatable)")
        p.add_argument("--sample", type=int, default=None, help="at most N executions per type")
    check.add_argument(
        "--from", dest="from_dir", default=None, help="a directory export-history wrote"
    )
    export.add_argument("--to", required=True, help="the directory to write into")
    check.set_defaults(func=cmd_replay_check)
    export.set_defaults(func=cmd_export_history)


def _stream_parsers(sub: Any) -> None:
    relay = sub.add_parser("relay", help="publish committed events to the Kafka event stream")
    tail_cmd = sub.add_parser("tail", help="print the live event stream (filter by type, entity)")
    schemas = sub.add_parser("schemas", help="AsyncAPI document / JSON Schemas of the events")
    for p in (relay, schemas):
        p.add_argument("--domain", default=None, help=DOMAIN_HELP)
    for p in (relay, tail_cmd):
        p.add_argument(
            "--bootstrap-servers", default=None, help="Kafka host:port (default: settings)"
        )
    tail_cmd.add_argument("--type", action="append", help="only this event type (repeatable)")
    tail_cmd.add_argument(
        "--entity", default=None, help="an address, an entity type, or a glob (Cart/c-*)"
    )
    tail_cmd.add_argument("--from-beginning", action="store_true", help="replay the topic first")
    tail_cmd.add_argument("--json", action="store_true", help="print the raw JSON records")
    tail_cmd.add_argument("--count", type=int, default=None, help="stop after N events")
    tail_cmd.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    schemas.add_argument(
        "--format", choices=("asyncapi", "jsonschema"), default="asyncapi", help="what to write"
    )
    schemas.add_argument("--output", default=None, help="file to write (default: stdout)")
    relay.set_defaults(func=cmd_relay)
    tail_cmd.set_defaults(func=cmd_tail)
    schemas.set_defaults(func=cmd_schemas)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="entityflow", description="Durable entity workflows: workers, API, tools."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run a worker process (joins the worker group)")
    worker.add_argument("--domain", default=None, help=DOMAIN_HELP)
    worker.add_argument(
        "--bootstrap-servers", default=None, help="Kafka host:port (default: from settings)"
    )
    worker.set_defaults(func=cmd_worker)

    for name, func, text in (
        ("serve", cmd_serve, "run the HTTP API against the configured store and cluster"),
        ("dev", cmd_dev, "run broker, worker and API in one process, with the example domain"),
    ):
        api = sub.add_parser(name, help=text)
        api.add_argument(
            "--domain",
            default=DEFAULT_DOMAIN if name == "dev" else None,
            help=DOMAIN_HELP + (f" (default: {DEFAULT_DOMAIN})" if name == "dev" else ""),
        )
        api.add_argument("--host", default=None, help="interface to bind (default: settings)")
        api.add_argument("--port", type=int, default=None, help="port (default: settings)")
        if name == "serve":
            api.add_argument(
                "--bootstrap-servers", default=None, help="Kafka host:port (default: settings)"
            )
        api.set_defaults(func=func)
    _stream_parsers(sub)
    _history_parsers(sub)
    operator_parsers(sub)
    return parser


_TRACED_COMMANDS = frozenset({"worker", "serve", "dev", "relay"})
"""The processes that do traced work (the OTEL_* variables configure their export)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command in _TRACED_COMMANDS and configure_tracing(f"entityflow-{args.command}"):
            exporter = os.environ.get("OTEL_TRACES_EXPORTER")
            print(f"entityflow {args.command}: tracing on (exporter {exporter})", flush=True)
        code: int = args.func(args)
    except (DomainLoadError, EventStoreError, ValueError) as exc:
        print(f"entityflow {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The operator's commands: ``entityflow workflows list|show|cancel``, ``entityflow
deadletters list|show|redrive``.

They talk to a running API over HTTP, through the typed client and exactly the routes the
web console reads, so what an operator sees here is what the console shows. Output is a
plain table (``--json`` prints the API's JSON); the exit code is 0 on success, 1 when
the API refused (its message and hint are printed), 3 when the API cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from api.client import ApiError, EntityflowClient, NotFoundError
from api.settings import Settings

__all__ = ["default_url", "operator_parsers"]

UNREACHABLE = 3
REFUSED = 1
CELL = 60
"""Table cells are cut to this many characters (``--json`` shows everything)."""


def default_url(settings: Settings | None = None) -> str:
    """Where ``entityflow serve`` listens by the settings (ENTITYFLOW_API_HOST and _PORT)."""
    s = settings or Settings()
    host = "127.0.0.1" if s.api_host in ("", "0.0.0.0", "::") else s.api_host
    return f"http://{host}:{s.api_port}"


def _printable(value: Any) -> str:
    """A value as one line with no control characters: entity ids, errors and payloads
    are user input, and an escape sequence in them must not reach the operator's terminal."""
    text = " ".join(str(value).split())
    return "".join(c if c.isprintable() else "?" for c in text)


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else _printable(value)
    return text if len(text) <= CELL else text[: CELL - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; an empty table says so."""
    if not rows:
        return "(none)"
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _print_json(body: Any) -> None:
    print(json.dumps(body, indent=2, default=str))


Command = Callable[[EntityflowClient, argparse.Namespace], None]


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    """Open a client on ``--url``, run, and turn failures into a sentence and an exit code."""

    def run(args: argparse.Namespace) -> int:
        url = args.url or default_url()
        what = f"entityflow {args.command} {args.action}"
        try:
            with EntityflowClient(url, timeout=args.timeout) as client:
                command(client, args)
        except httpx.TransportError as exc:
            print(
                f"{what}: cannot reach {url} ({type(exc).__name__}: {exc}): "
                "is `entityflow serve` running? Pass --url, or set ENTITYFLOW_API_HOST and "
                "ENTITYFLOW_API_PORT",
                file=sys.stderr,
            )
            return UNREACHABLE
        except ApiError as exc:
            hint = f"; {exc.hint}" if exc.hint else ""
            print(
                f"{what}: {exc.status} {exc.error}: {exc.message}{hint}",
                file=sys.stderr,
            )
            return REFUSED
        return 0

    return run


# -- workflows --------------------------------------------------------------------------


def workflows_list(client: EntityflowClient, args: argparse.Namespace) -> None:
    found, after = client.workflows(
        args.type, status=args.status, after=args.after, limit=args.limit
    )
    if args.json:
        _print_json({"executions": found, "next_after": after})
        return
    rows = [
        (
            e["workflow_type"],
            e["workflow_id"],
            e["status"],
            e.get("started_at"),
            e.get("updated_at"),
            (e.get("summary") or {}).get("steps_done"),
            (e.get("summary") or {}).get("error"),
        )
        for e in found
    ]
    print(table(("TYPE", "ID", "STATUS", "STARTED", "UPDATED", "STEPS", "ERROR"), rows))
    if after is not None:
        print(f"more: --after {after}")


def _timeline(client: EntityflowClient, workflow_type: str, workflow_id: str) -> dict[str, Any]:
    """The timeline's memo and what the execution waits on ({} from a server without it)."""
    try:
        found = client.workflow_timeline(workflow_type, workflow_id)
    except NotFoundError:
        return {}
    return {"memo": found.get("memo"), "waiting_on": found.get("waiting_on") or []}


def workflows_show(client: EntityflowClient, args: argparse.Namespace) -> None:
    status = client.workflow_status(args.type, args.id).model_dump(mode="json")
    events: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None and len(events) < args.history:
        page, after = client.workflow_history(args.type, args.id, after=after, limit=100)
        events += [e.model_dump(mode="json") for e in page]
    events = events[: args.history]
    timeline = _timeline(client, args.type, args.id)
    if args.json:
        _print_json({"status": status, **timeline, "history": events})
        return
    print(f"{status['workflow_type']}/{status['workflow_id']}: {status['status']}")
    for key in ("started_at", "updated_at", "error", "failed_compensation", "result"):
        if status.get(key) not in (None, ""):
            print(f"  {key.replace('_', ' ')}: {_cell(status[key])}")
    if status.get("parked"):
        print(f"  parked: {_cell(status['parked'])}")
    if timeline.get("waiting_on"):
        print(f"  waiting on: {_cell(', '.join(timeline['waiting_on']))}")
    for name, value in (timeline.get("memo") or {}).items():
        print(f"  memo {name}: {_cell(value)}")
    print("\nsteps:")
    steps = [
        (s["seq"], s["address"], s["command"], s["status"], s.get("attempts"), s.get("error"))
        for s in status.get("steps", [])
    ]
    print(table(("SEQ", "ADDRESS", "COMMAND", "STATUS", "ATTEMPTS", "ERROR"), steps))
    comps = [
        (c["index"], c["name"], c["address"], c["status"], c.get("attempts"), c.get("error"))
        for c in status.get("compensations", [])
    ]
    if comps:
        print("\ncompensations:")
        print(table(("INDEX", "NAME", "ADDRESS", "STATUS", "ATTEMPTS", "ERROR"), comps))
    if status.get("compensations_pending"):
        print(f"\npending compensations: {', '.join(status['compensations_pending'])}")
    print("\nhistory:")
    rows = [(e["version"], e["timestamp"], e["type"], json.dumps(e["data"])) for e in events]
    print(table(("VERSION", "AT", "EVENT", "DATA"), rows))
    if after is not None:
        print(f"(first {len(events)} events; --history N shows more)")


def workflows_cancel(client: EntityflowClient, args: argparse.Namespace) -> None:
    command_id = client.cancel_workflow(args.type, args.id, args.reason)
    if args.json:
        _print_json({"workflow_type": args.type, "workflow_id": args.id, "command_id": command_id})
        return
    print(
        f"cancel of {args.type}/{args.id} recorded (command {command_id}); it runs its "
        f"compensations: watch `entityflow workflows show {args.type} {args.id}`"
    )


def workflows_repair(client: EntityflowClient, args: argparse.Namespace) -> None:
    command_id = client.repair_workflow(args.type, args.id, args.index, args.action, args.reason)
    if args.json:
        _print_json({"workflow_type": args.type, "workflow_id": args.id, "command_id": command_id})
        return
    print(
        f"{args.action} of compensation #{args.index} of {args.type}/{args.id} recorded "
        f"(command {command_id}); it goes on compensating: watch "
        f"`entityflow workflows show {args.type} {args.id}`"
    )


# -- dead letters -----------------------------------------------------------------------


def deadletters_list(client: EntityflowClient, args: argparse.Namespace) -> None:
    found, after = client.dead_letters(after=args.after, limit=args.limit)
    if args.json:
        _print_json({"dead_letters": found, "next_after": after})
        return
    rows = [
        (
            d["id"],
            d["at"],
            f"{d['entity_type']}/{d['entity_id']}" if d["entity_type"] else "-",
            d["command"],
            d["redriven_at"] or "no",
            d["error"],
        )
        for d in found
    ]
    print(table(("ID", "AT", "ADDRESS", "COMMAND", "REDRIVEN", "ERROR"), rows))
    if after is not None:
        print(f"more: --after {after}")


def deadletters_show(client: EntityflowClient, args: argparse.Namespace) -> None:
    found = client.dead_letter(args.id)
    if args.json:
        _print_json(found)
        return
    for key, value in found.items():
        shown = json.dumps(value) if isinstance(value, dict) else value
        print(f"{key.replace('_', ' ')}: {'-' if shown is None else _printable(shown)}")


def deadletters_redrive(client: EntityflowClient, args: argparse.Namespace) -> None:
    done = client.redrive(args.id)
    if args.json:
        _print_json(done)
        return
    print(
        f"dead letter {done['id']} sent again at {done['redriven_at']}; its outcome: "
        f"GET {done['outcome']} (it reads dead_lettered until a worker has run it)"
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=None,
        help="the API's base URL (default: http://$ENTITYFLOW_API_HOST:$ENTITYFLOW_API_PORT, "
        "i.e. http://127.0.0.1:8000)",
    )
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")


def operator_parsers(sub: Any) -> None:
    """Add ``workflows`` and ``deadletters`` (and their subcommands) to the CLI."""
    wf = sub.add_parser("workflows", help="list, show, cancel and repair workflow executions")
    wf_sub = wf.add_subparsers(dest="action", required=True)
    listing = wf_sub.add_parser("list", help="executions by type and status, paged")
    listing.add_argument("--type", default=None, help="only this workflow type")
    listing.add_argument("--status", default=None, help="only this status (e.g. running)")
    listing.add_argument("--limit", type=int, default=50, help="at most N (default 50)")
    listing.add_argument("--after", default=None, help="the `more: --after` of the last page")
    listing.set_defaults(func=_run(workflows_list))
    show = wf_sub.add_parser("show", help="status, memo (its stage), steps, history")
    cancel = wf_sub.add_parser("cancel", help="cancel an execution (runs its compensations)")
    repair = wf_sub.add_parser(
        "repair", help="retry or skip the compensation a failed execution could not finish"
    )
    for p in (show, cancel, repair):
        p.add_argument("type", help="the workflow type, e.g. Order")
        p.add_argument("id", help="the workflow id")
    show.add_argument("--history", type=int, default=200, help="at most N events (default 200)")
    show.set_defaults(func=_run(workflows_show))
    cancel.add_argument("--reason", default="", help="why (recorded with the cancellation)")
    cancel.set_defaults(func=_run(workflows_cancel))
    repair.add_argument("index", type=int, help="the failed compensation's # (see show)")
    repair.add_argument("action", choices=["retry", "skip"], help="run it again, or skip it")
    repair.add_argument("--reason", default="", help="why (recorded; a skip needs one)")
    repair.set_defaults(func=_run(workflows_repair))

    dl = sub.add_parser("deadletters", help="list dead letters and re-drive them")
    dl_sub = dl.add_subparsers(dest="action", required=True)
    dl_list = dl_sub.add_parser("list", help="dead letters, oldest first, with their error")
    dl_list.add_argument("--limit", type=int, default=100, help="at most N (default 100)")
    dl_list.add_argument("--after", default=None, help="the `more: --after` of the last page")
    dl_list.set_defaults(func=_run(deadletters_list))
    dl_show = dl_sub.add_parser("show", help="one dead letter, with its command id and args")
    redrive = dl_sub.add_parser("redrive", help="send a dead letter again (once)")
    for p in (dl_show, redrive):
        p.add_argument("id", help="the dead letter's id, as listed (e.g. 0-17)")
    dl_show.set_defaults(func=_run(deadletters_show))
    redrive.set_defaults(func=_run(deadletters_redrive))
    for p in (listing, show, cancel, repair, dl_list, dl_show, redrive):
        _common(p)

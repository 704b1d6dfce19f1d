"""entityflow beside Restate on the shared W1-W3 workloads, in one sitting.

The shared driver (``../shared/bench/workloads.py``, its closed-loop load generator with
32 keep-alive connections) runs first against an entityflow stack (Apache Kafka, one
``entityflow worker`` and one ``entityflow serve`` process on PostgreSQL, the workloads'
domain from ``bench/peer_domain.py``), then ``restate.sh`` runs Restate on the same
workloads with the same driver. The table shows each median with its range and the
ratio entityflow / Restate: only ratios from one sitting mean anything on this machine.

``--peers DIR`` names the shared bench folder (default ``../shared/bench`` beside the
project); ``--only W1,W3`` limits the workloads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.broker import broker_name, section_broker
from bench.http_stack import running_stack
from bench.options import Options
from bench.stores import store_url
from bench.table import Table

ROOT = Path(__file__).resolve().parent.parent
ROWS = (
    ("W1_update", "rate_per_s", "W1 update, /s"),
    ("W1_update", "p99_ms", "W1 update, p99 ms"),
    ("W1_send", "rate_per_s", "W1 signal accepted, /s"),
    ("W1_send", "applied_per_s", "W1 signal applied, /s"),
    ("W2_query", "rate_per_s", "W2 query, /s"),
    ("W2_query", "p99_ms", "W2 query, p99 ms"),
    ("W3_saga", "rate_per_s", "W3 saga, /s"),
    ("W3_saga", "p99_ms", "W3 saga, p99 ms"),
)


def _adapter(workloads: Any) -> Any:
    """The entityflow adapter: each abstract operation as entityflow's HTTP request."""

    class EntityflowAdapter(workloads.Adapter):  # type: ignore[misc,name-defined]
        name = "entityflow"

        def deposit_req(self, key: str, amount: int, i: int, tag: str) -> Any:
            return ("POST", f"/entities/Account/{key}/updates/deposit", {"amount": amount})

        def deposit_send_req(self, key: str, amount: int, i: int, tag: str) -> Any:
            return ("POST", f"/entities/Account/{key}/signals/deposit", {"amount": amount})

        def balance_req(self, key: str) -> Any:
            return ("GET", f"/entities/Account/{key}/queries/balance", None)

        def parse_balance(self, r: httpx.Response) -> int:
            return int(r.json()["result"])

        def restock_req(self, sku: str, qty: int, tag: str) -> Any:
            return ("POST", f"/entities/Inventory/{sku}/updates/restock", {"qty": qty})

        def stock_req(self, sku: str) -> Any:
            return ("GET", f"/entities/Inventory/{sku}/queries/stock", None)

        def parse_stock(self, r: httpx.Response) -> int:
            return int(r.json()["result"])

        def saga_req(self, o: dict[str, Any]) -> Any:
            start = {"workflow_id": o["order_id"], "input": o}
            return [
                ("POST", "/workflows/OrderSaga", start),
                ("GET", f"/workflows/OrderSaga/{o['order_id']}?wait=30", None),
            ]

        def parse_saga(self, r: httpx.Response) -> str:
            return str(r.json()["status"])

    return EntityflowAdapter()


def _entityflow(options: Options, peers: Path, only: set[str], out: Path) -> dict[str, Any]:
    sys.path.insert(0, str(peers))
    import workloads  # type: ignore[import-not-found]  # the shared driver, outside the repo

    with (
        section_broker(options) as bootstrap,
        store_url("postgres", options.pg) as url,
        tempfile.TemporaryDirectory(prefix="entityflow-peers-") as logs,
        running_stack(url, Path(logs), bootstrap, domain="bench.peer_domain") as stack,
    ):
        # Every SKU exists before the driver first reads the stock (entityflow answers 404
        # for an entity with no history; Restate answers 0).
        with httpx.Client(base_url=stack.url, timeout=30) as http:
            for s in range(workloads.N_SKUS):
                r = http.post(f"/entities/Inventory/sku-{s}/updates/restock", json={"qty": 0})
                r.raise_for_status()
        result: dict[str, Any] = workloads.run_all(
            stack.url, _adapter(workloads), str(out), reps=options.runs, only=only
        )
        return result


def _restate(options: Options, peers: Path, only: set[str], out: Path) -> dict[str, Any]:
    env = {**os.environ, "REPS": str(options.runs), "OUT": str(out)}
    done = subprocess.run(
        ["bash", str(peers / "restate.sh"), ",".join(sorted(only))], env=env, check=False
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"restate.sh failed with exit code {done.returncode}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _median(results: dict[str, Any], workload: str, key: str) -> tuple[float, str] | None:
    summary = results.get(workload, {}).get("summary", {})
    value = summary.get(key)
    if not value:
        return None
    return float(value["median"]), f"{value['min']:,.0f}..{value['max']:,.0f}"


def run(options: Options) -> Table:
    peers = Path(options.peers).resolve()
    if not (peers / "workloads.py").exists():
        raise SystemExit(f"the shared bench folder {peers} has no workloads.py; pass --peers DIR")
    only = set(options.only)
    with tempfile.TemporaryDirectory(prefix="entityflow-peers-") as tmp:
        ours = _entityflow(options, peers, only, Path(tmp) / "entityflow.json")
        theirs = _restate(options, peers, only, Path(tmp) / "restate.json")
    table = Table(
        f"entityflow ({broker_name(options)}, PostgreSQL, 1 worker + 1 API process) beside "
        f"Restate 1.7, the shared W1-W3 driver, median [range] of {options.runs} runs each, "
        "one sitting",
        ["figure", "entityflow", "range", "Restate", "range", "entityflow / Restate"],
    )
    for workload, key, label in ROWS:
        a, b = _median(ours, workload, key), _median(theirs, workload, key)
        if a is None and b is None:
            continue
        ratio = f"{a[0] / b[0]:.2f}" if a is not None and b is not None and b[0] else ""
        table.add(
            label,
            a[0] if a else "",
            a[1] if a else "",
            b[0] if b else "",
            b[1] if b else "",
            ratio,
        )
    checks = [
        (
            "W1 balances",
            all(r.get("balance_delta_ok") for r in ours.get("W1_update", {}).get("runs", [])),
        ),
        (
            "W1 signals applied",
            all(r.get("applied_all") for r in ours.get("W1_send", {}).get("runs", [])),
        ),
        (
            "W3 consistency",
            bool(ours.get("W3_saga", {}).get("consistency_ok_all", "W3" not in only)),
        ),
    ]
    for name, ok in checks:
        table.target(ok, f"entityflow {name} check")
    errors = sum(
        v.get("summary", {}).get("errors_total", 0) for v in ours.values() if isinstance(v, dict)
    )
    table.target(errors == 0, f"entityflow requests in error: {errors}")
    return table

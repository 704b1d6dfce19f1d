"""The flags every section reads, gathered in one frozen object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.stores import DEFAULT_PG


@dataclass(frozen=True)
class Options:
    runs: int = 3
    """Repetitions of each throughput measurement; the table shows the median."""
    stores: tuple[str, ...] = ("sqlite", "postgres")
    pg: str = DEFAULT_PG
    """PostgreSQL base URL; each measurement runs in a fresh schema that is dropped after."""
    sizes: tuple[int, ...] = (10, 1_000, 10_000, 100_000)
    """History lengths for the rehydration section."""
    bootstrap: str | None = None
    """A running Kafka cluster to use; None starts one Apache Kafka per section."""
    seconds: float = 300.0
    """How long the sustained section keeps W1 going."""
    peers: str = str(Path(__file__).resolve().parents[2] / "shared" / "bench")
    """The shared bench folder (driver and peers) for the peers section."""
    only: tuple[str, ...] = ("W1", "W2", "W3")
    """Workloads the peers section runs."""

"""The flags every section reads, gathered in one frozen object."""

from __future__ import annotations

from dataclasses import dataclass

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

"""A result table that prints as Markdown, so it can be pasted into notes and issues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: list[Sequence[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append(cells)

    def target(self, ok: bool, text: str) -> None:
        """Record a target check; a missed target is listed and fails ``--check``."""
        self.notes.append(f"{'PASS' if ok else 'MISS'}: {text}")
        if not ok:
            self.failed.append(text)

    def render(self) -> str:
        cells = [[str(c) for c in self.columns], *([_fmt(c) for c in r] for r in self.rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]

        def line(row: Sequence[str]) -> str:
            padded = (
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            return "| " + " | ".join(padded) + " |"

        out = [f"### {self.title}", "", line(cells[0])]
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out += [line(r) for r in cells[1:]]
        if self.notes:
            out += ["", *self.notes]
        return "\n".join(out)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)

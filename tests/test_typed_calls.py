"""mypy checks calls to handlers named by reference: a wrong argument is a type error.

``tests/typing/mistakes.py`` holds deliberate mistakes, each marked with a fragment of the
error mypy must report on that line; the unmarked lines (correct calls) must pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MISTAKES = ROOT / "tests" / "typing" / "mistakes.py"
MARK = re.compile(r"\S.*  # error: (.+)$")


def test_mypy_reports_each_deliberate_mistake_and_nothing_else() -> None:
    expected = {
        n: match.group(1).strip()
        for n, line in enumerate(MISTAKES.read_text().splitlines(), start=1)
        if (match := MARK.search(line))
    }
    assert len(expected) >= 8
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--follow-imports=silent",
            str(MISTAKES.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    errors: dict[int, list[str]] = {}
    for line in done.stdout.splitlines():
        found = re.match(r"tests/typing/mistakes\.py:(\d+): error: (.*)$", line)
        if found:
            errors.setdefault(int(found.group(1)), []).append(found.group(2))
    assert set(errors) == set(expected), done.stdout
    for n, fragment in expected.items():
        assert any(fragment in e for e in errors[n]), f"line {n}: {errors[n]} lacks {fragment!r}"

"""The README's quick start runs as written and prints what its comments promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's quick start has no python block"
    return match.group(1)


def test_the_quick_start_runs(tmp_path: Path) -> None:
    code = _quick_start()
    # The outputs the README shows in comments, next to the prints that make them.
    promised = re.findall(r"^\s*print\(.*\)\s+# (.+)$", code, re.MULTILINE)
    assert promised[:2] == ["20.00 3", "QueryResult(result='20.00', version=3)"]
    (tmp_path / "quickstart.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "quickstart.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == promised[:2]
    # "the state right after opening": open, with nothing deposited yet.
    assert lines[2] == (
        "StateView(state=AccountState(status='open', owner='Ada', balance=Decimal('0')), version=1)"
    )
    assert len(lines) == 3
    assert (tmp_path / "quickstart.db").exists()

"""What a user installs: the four packages only; their domain module comes from where they run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from api.wiring import load_domain

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_installs_the_four_packages_only(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", ".entityflow", "*cache*"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("entityflow-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {
        "actors",
        "api",
        "eventstore",
        "sagas",
    }
    assert any(n.endswith("LICENSE") for n in zipfile.ZipFile(wheel).namelist())
    # the web console's static files ship in the package, every one of them
    console = ROOT / "api" / "console"
    assets = {f"api/console/{p.relative_to(console).as_posix()}" for p in console.rglob("*.*")}
    assert {"api/console/index.html", "api/console/assets/js/app.js"} <= assets
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("api/console/")}
    assert shipped == assets


def test_the_domain_module_is_found_in_the_directory_the_processes_run_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_billing.py").write_text(
        "from examples.shop import Account\nfrom sagas import Domain\nDOMAIN = Domain((Account,))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    domain = load_domain("my_billing")
    assert [cls.__name__ for cls in domain.entities] == ["Account"]

"""``entityflow replay-check`` and ``export-history``: unchanged code passes, a step added
without ``ctx.patched`` is reported with the execution and the step (exit code 1), the same
change behind a patch passes; exported files replay like the store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from api import cli
from sagas import Domain, Host
from tests.sagas_tests.ship import v1
from tests.sagas_tests.test_timers import ManualClock, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def recorded(store_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two v1 executions: one finished, one asleep mid-way; the store URL they are in."""
    clock = ManualClock()
    ship = v1.DOMAIN.workflows[0]
    with Host(v1.DOMAIN, store_url, clock=clock) as host:
        host.workflows.start(ship, {"vault": "a"}, workflow_id="done")
        await until(lambda: bool(host.store.timers("workflow:Ship/done")), "the first sleep")
        clock.advance(timedelta(hours=1))
        await host.workflows.wait(ship, "done")
        host.workflows.start(ship, {"vault": "b"}, workflow_id="asleep")
        await until(lambda: bool(host.store.timers("workflow:Ship/asleep")), "the second sleep")
    monkeypatch.setenv("ENTITYFLOW_STORE", store_url)
    return store_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


async def test_unchanged_code_replays_every_history(
    recorded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "replay-check", "--domain", "tests.sagas_tests.ship.v1")
    assert code == 0, out
    assert "all 2 histories replay (2 Ship)" in out


async def test_a_step_added_without_a_patch_is_reported_and_fails(
    recorded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "replay-check", "--domain", "tests.sagas_tests.ship.v2_unpatched")
    assert code == 1, out
    lines = [line for line in out.splitlines() if line.startswith("DIVERGES")]
    assert sorted(lines) == [
        "DIVERGES Ship asleep, step 2: the history has timer #2 (sleep) due "
        "2026-01-01T02:00:00+00:00; the code now does call #2 "
        "Vault/b.put(key='insurance', amount=1)",
        "DIVERGES Ship done, step 2: the history has timer #2 (sleep) due "
        "2026-01-01T01:00:00+00:00; the code now does call #2 "
        "Vault/a.put(key='insurance', amount=1)",
    ]
    assert "2 of 2 histories do not replay" in out


async def test_the_change_behind_a_patch_passes(
    recorded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "replay-check", "--domain", "tests.sagas_tests.ship.v2_patched")
    assert code == 0, out


async def test_exported_histories_replay_like_the_store(
    recorded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(
        capsys, "export-history", "--domain", "tests.sagas_tests.ship.v1", "--to", str(tmp_path)
    )
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "Ship").iterdir()) == ["asleep.json", "done.json"]
    for domain, expected in (("v1", 0), ("v2_unpatched", 1), ("v2_patched", 0)):
        code, out = run(
            capsys,
            "replay-check",
            "--domain",
            f"tests.sagas_tests.ship.{domain}",
            "--from",
            str(tmp_path),
        )
        assert code == expected, (domain, out)


async def test_an_unknown_type_is_a_clear_error(
    recorded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["replay-check", "--domain", "tests.sagas_tests.ship.v1", "--type", "Nope"])
    assert code == 2
    assert "has no workflow type Nope; it has Ship" in capsys.readouterr().err


def test_the_domain_module_is_a_domain() -> None:
    assert isinstance(v1.DOMAIN, Domain)

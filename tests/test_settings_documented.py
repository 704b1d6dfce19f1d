"""Every setting says what it does, and the README's table lists every one."""

from __future__ import annotations

from pathlib import Path

from api.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_described_and_in_the_readme() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no description"
        assert f"`ENTITYFLOW_{name.upper()}`" in README, f"README lacks ENTITYFLOW_{name.upper()}"

"""The README documents every setting each program reads and the two commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from agent.config import AgentConfig, MonitorConfig
from core.config import env_key
from core.settings import ServerSettings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("model", [ServerSettings, AgentConfig, MonitorConfig])
def test_every_setting_is_in_the_readme_table(model: type[BaseModel]) -> None:
    """Each TELEWORK_* variable a settings object reads has a row in the README's settings table."""
    missing = [env_key(name) for name in model.model_fields if f"| `{env_key(name)}` |" not in README]
    assert missing == []


def test_readme_shows_the_two_commands() -> None:
    """A newcomer finds `make demo` and `make test` in the README."""
    assert "make demo" in README
    assert "make test" in README

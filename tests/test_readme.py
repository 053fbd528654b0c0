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


def _architecture() -> str:
    return README.split("## Architecture", 1)[1].split("\n## ", 1)[0]


def test_architecture_names_every_layer_of_the_import_rule() -> None:
    """The README's layer picture shows each layer the import-rule test enforces."""
    from tests.test_layers import LAYERS

    picture = _architecture().split("```")[1]
    assert [layer for layer in LAYERS if layer.replace(".", "/") + "/" not in picture] == []


def test_architecture_paths_exist() -> None:
    """Every file the Architecture section points to exists (bare names are siblings of the last path)."""
    import re

    root = Path(__file__).resolve().parent.parent
    missing, folder = [], Path()
    for name in re.findall(r"`([a-z_/]+(?:\.py|/))`", _architecture()):
        path = Path(name)
        if len(path.parts) > 1:
            folder = path.parent if name.endswith(".py") else path
        target = root / path if len(path.parts) > 1 else root / folder / path
        if not target.exists():
            missing.append(name)
    assert missing == []


def test_face_tests_skip_with_one_reason_without_the_photos() -> None:
    """TELEWORK_TEST_FACES pointing nowhere: the face tests skip naming the folder; none fails."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TELEWORK_TEST_FACES": "/nonexistent/faces"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_enroll.py"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "failed" not in done.stdout
    assert (
        "real face photos not found at /nonexistent/faces (set TELEWORK_TEST_FACES to their folder)"
        in done.stdout
    )

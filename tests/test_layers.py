"""The import rule: each layer imports only the layers below it (README "Architecture").

Read statically with ``ast``, so an import inside a function or under ``TYPE_CHECKING``
counts too: a lower layer that needs a name from a higher one gets it passed in.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Layer -> the project layers it may import (besides itself). Lowest first.
LAYERS: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "realtime.protocol": frozenset({"core"}),
    "agent": frozenset({"core", "realtime.protocol"}),
    "storage": frozenset({"core", "realtime.protocol"}),
    "realtime": frozenset({"core", "realtime.protocol", "storage"}),
    "workers": frozenset({"core", "realtime.protocol", "storage", "realtime"}),
    "dashboard": frozenset({"core", "realtime.protocol", "storage", "realtime", "workers"}),
    "web": frozenset({"core", "realtime.protocol", "storage", "realtime", "workers", "dashboard"}),
    "telework": frozenset(
        {"core", "realtime.protocol", "storage", "realtime", "workers", "dashboard", "web", "agent"}
    ),
}
TOP_PACKAGES = frozenset(name.split(".")[0] for name in LAYERS)


def layer_of(module: str) -> str | None:
    """The most specific layer a dotted module name belongs to (None: not the project's)."""
    best: str | None = None
    for layer in LAYERS:
        if (module == layer or module.startswith(layer + ".")) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def imported_modules(source: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import in ``source``, wherever it stands."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from realtime import keys` imports realtime.keys
                yield node.lineno, f"{node.module}.{alias.name}"


def violations(root: Path) -> list[str]:
    """Every import under ``root`` that goes from a layer to one it may not use."""
    found: list[str] = []
    for top in sorted(TOP_PACKAGES):
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            own = layer_of(module)
            assert own is not None
            for line, name in imported_modules(path.read_text(encoding="utf-8")):
                target = layer_of(name)
                if target is None or target == own or target in LAYERS[own]:
                    continue
                if name.split(".")[0] not in TOP_PACKAGES:
                    continue
                found.append(f"{rel}:{line}: {own} imports {name} ({target})")
    return sorted(set(found))


def test_every_layer_imports_only_layers_below_it() -> None:
    """No module of the project imports a layer above its own."""
    assert violations(ROOT) == []


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    """A deliberately wrong tree (core importing the CLI, the agent importing storage) fails the rule."""
    for top in TOP_PACKAGES:
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
    (tmp_path / "core" / "bad.py").write_text("def f():\n    from telework.cli import main\n")
    (tmp_path / "agent" / "worse.py").write_text("import os\nfrom storage import db\n")
    (tmp_path / "storage" / "fine.py").write_text("from core.settings import ServerSettings\n")
    (tmp_path / "realtime" / "protocol").mkdir()
    (tmp_path / "realtime" / "protocol" / "wire.py").write_text("from realtime import gateway\n")
    assert violations(tmp_path) == [
        "agent/worse.py:2: agent imports storage.db (storage)",
        "core/bad.py:2: core imports telework.cli.main (telework)",
        "realtime/protocol/wire.py:1: realtime.protocol imports realtime.gateway (realtime)",
    ]


def test_layer_of_picks_the_most_specific_layer() -> None:
    """realtime.protocol.* is the protocol layer, other realtime.* the gateway layer, os none."""
    assert [layer_of(m) for m in ("realtime.protocol.codec", "realtime.gateway", "realtime", "os")] == [
        "realtime.protocol",
        "realtime",
        "realtime",
        None,
    ]

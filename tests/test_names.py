"""Project-wide naming: every class name is defined once across the project's packages."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "realtime", "storage", "workers", "dashboard", "agent", "telework")


def class_definitions(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, list[str]]:
    """Each class name defined in ``packages`` (at any depth) -> where: ``path:line``, in file order."""
    found: dict[str, list[str]] = defaultdict(list)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    found[node.name].append(f"{path.relative_to(root)}:{node.lineno}")
    return dict(found)


def duplicates(definitions: dict[str, list[str]]) -> dict[str, list[str]]:
    """The names defined more than once, with every place they are defined."""
    return {name: places for name, places in sorted(definitions.items()) if len(places) > 1}


def test_every_class_name_is_defined_once() -> None:
    """No two classes of core, realtime, storage, workers, dashboard, agent and telework share a name."""
    found = duplicates(class_definitions())
    listed = "; ".join(f"{name} at {', '.join(places)}" for name, places in found.items())
    assert found == {}, f"class names defined more than once: {listed}"


def test_duplicates_are_named_with_their_places(tmp_path: Path) -> None:
    """The check names a duplicated class and every file and line defining it, nested classes included."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "a.py").write_text("class Span:\n    pass\n\n\nclass Only:\n    pass\n")
    (tmp_path / "two" / "b.py").write_text("def f():\n    class Span:\n        pass\n")
    found = class_definitions(tmp_path, ("one", "two"))
    assert duplicates(found) == {"Span": ["one/a.py:1", "two/b.py:2"]}


ISSUE_REFERENCE = re.compile(r"\bissues? #?\d+", re.IGNORECASE)


def issue_references(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``path:line`` of every mention of a tracker issue number in the project's code."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if ISSUE_REFERENCE.search(line):
                    found.append(f"{path.relative_to(root)}:{number}")
    return found


def test_code_names_no_tracker_issues() -> None:
    """Code, docstrings and migrations say what a thing is, never which tracker issue brought it."""
    assert issue_references() == []
    assert ISSUE_REFERENCE.search("# the spool (issue 4)") is not None
    assert ISSUE_REFERENCE.search("token issue, revocation") is None

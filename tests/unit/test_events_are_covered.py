"""A cheap guard: every sample event in events/ is used by some test under tests/.

An event counts as used when a test's string literal names it: the file name
(`"debit-success.json"`, `"events/debit-success.json"`), its stem as a loader takes it
(`load_event("balance")`), or a glob a parametrized test expands (`"debit-*.json"`).
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

from devtools import template

EVENTS = template.PROJECT_ROOT / "events"
TESTS = template.PROJECT_ROOT / "tests"


def string_literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def names(event: Path, literal: str) -> bool:
    last = literal.rsplit("/", 1)[-1]
    if last in (event.name, event.stem):
        return True
    return any(c in last for c in "*?[") and fnmatchcase(event.name, last)


def test_every_event_file_is_referenced_by_a_test() -> None:
    literals = set().union(
        *(
            string_literals(path)
            for path in TESTS.rglob("*.py")
            if path.resolve() != Path(__file__).resolve()
        )
    )
    events = sorted(EVENTS.glob("*.json"))

    unreferenced = [e.name for e in events if not any(names(e, s) for s in literals)]

    assert events
    assert not unreferenced, f"no test under tests/ uses {unreferenced}"


def test_the_guard_recognises_names_stems_and_globs() -> None:
    event = Path("events/debit-success.json")
    assert names(event, "debit-success.json")
    assert names(event, "events/debit-success.json")
    assert names(event, "debit-success")
    assert names(event, "debit-*.json")
    assert not names(event, "debit")
    assert not names(event, "stats-*.json")

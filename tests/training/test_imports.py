"""Imports go one way: the library imports neither training nor analyses; training never imports
analyses (what both need lives in the library: `lens_positions.runs`, `.samples`, `.tables`).

Checked on the source (every import statement, also those inside functions), so that an import
made only when a command runs is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_packages(package: str) -> dict[str, set[str]]:
    """File -> top-level names imported anywhere in it, for every module of ``package``."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize(("package", "forbidden"), [
    ("training", {"analyses"}),
    ("lens_positions", {"training", "analyses"}),
])  # fmt: skip
def test_imports_go_one_way(package, forbidden):
    bad = {f: sorted(n & forbidden) for f, n in imported_packages(package).items() if n & forbidden}
    assert not bad, bad


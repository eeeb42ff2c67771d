"""The checkout fits what travels to the GPU machine: tracked files under 64 MiB in all
(docs/offline.md; a device call carries the working tree and refuses a larger one)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE_LIMIT = 64 << 20


def test_tracked_tree_fits_the_device_payload():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / n for n in names.decode().split("\0") if n]
    sizes = {f: f.stat().st_size for f in files if f.is_file()}
    total = sum(sizes.values())
    biggest = sorted(sizes, key=sizes.get, reverse=True)[:5]
    assert total < DEVICE_LIMIT, (
        f"tracked files take {total / 2**20:.1f} MiB, over the {DEVICE_LIMIT >> 20} MiB a device call "
        "carries; largest: " + ", ".join(f"{f.relative_to(ROOT)} ({sizes[f] / 2**20:.1f} MiB)" for f in biggest)
    )


# ----------------------------------------------------------------------------- structure
PACKAGES = ("lens_positions", "training", "analyses")
#: Which package may import which: the library at the bottom, analyses at the top.
MAY_IMPORT = {"lens_positions": {"lens_positions"}, "training": {"lens_positions", "training"},
              "analyses": set(PACKAGES)}


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its file (lazy imports included;
    ``if TYPE_CHECKING:`` blocks, which never run, left out)."""
    import ast

    def nodes(tree: ast.AST):
        for node in ast.iter_child_nodes(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
                continue
            yield node
            yield from nodes(node)

    files = {_module_of(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package
                    pkg = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in files and t != name}
        graph[name] = deps
    return graph


def test_imports_run_one_way():
    bad = [f"{m} imports {d}" for m, deps in import_graph().items() for d in deps
           if d.split(".")[0] not in MAY_IMPORT[m.split(".")[0]]]
    assert not bad, bad


def test_no_import_cycle():
    """No module reaches itself through imports (a package's ``__init__`` counts as the package;
    a package importing its own submodules is not a cycle)."""
    graph = import_graph()
    for m in graph:  # a package re-exporting its parts is fine; the parts must not import it back
        graph[m] = {d for d in graph[m] if not d.startswith(m + ".")}
    cycles = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long


def test_every_document_the_code_cites_is_in_the_repository():
    """Citations of ``docs/*.md`` resolve, and nothing cites a file users do not have."""
    import re

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = [ROOT / f for f in tracked.stdout.split() if f.endswith((".py", ".md", ".sh", ".ipynb"))]
    missing, outside = [], []
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        missing += [f"{path.relative_to(ROOT)}: {m}" for m in re.findall(r"docs/[\w-]+\.md", text)
                    if not (ROOT / m).is_file()]
        if re.search(r"REFERENCE(\.md| §)", text) and path.name != "test_repository.py":
            outside.append(str(path.relative_to(ROOT)))
    assert not missing, missing
    assert not outside, outside


def test_the_readme_lists_every_analysis_as_the_package_does():
    """The README's table of analyses is `analyses.ANALYSES` (the one list), row for row."""
    import re

    import analyses

    rows = re.findall(r"^\| `python -m analyses\.(\w+)` \| (.+?) \|$", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    listed = {name: what for name, what in rows if name != "results"}
    assert list(listed) == list(analyses.ANALYSES)
    assert listed == analyses.ANALYSES
    assert "results" in dict(rows)

"""No import cycles among the framework, the lab and the reference service, counting imports under
`if TYPE_CHECKING:` and inside functions (a cycle there is still two modules that need each other);
a planted cycle is caught."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dbos_publishers", "lab", "app")
# Runs this module's check in a fresh interpreter: grimp finds packages through the import system,
# which in this process already holds the repository's own.
CHECK_ELSEWHERE = (
    "import json, runpy, sys; "
    "sys.stdout.write(json.dumps(runpy.run_path(sys.argv[1])['import_cycles']()))"
)


def import_cycles() -> list[list[str]]:
    """Each set of modules that import each other (a strongly connected component of more than one
    module, or a module importing itself), sorted, with the imports among them as "a -> b"."""
    graph = grimp.build_graph(
        *PACKAGES,
        include_external_packages=False,
        exclude_type_checking_imports=False,
        cache_dir=None,
    )
    imports = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    found: list[list[str]] = []
    for component in _components(imports):
        members = set(component)
        if len(component) > 1 or component[0] in imports[component[0]]:
            edges = [f"{a} -> {b}" for a in component for b in imports[a] if b in members]
            found.append(sorted(component) + sorted(edges))
    return sorted(found)


def _components(imports: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iterative: no long import chain meets the recursion
    limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start, targets in imports.items():
        if start in index:
            continue
        work = [(start, iter(targets))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, pending = work[-1]
            target = next(pending, None)
            if target is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    components.append(component)
            elif target not in index:
                index[target] = low[target] = len(index)
                stack.append(target)
                on_stack.add(target)
                work.append((target, iter(imports[target])))
            elif target in on_stack:
                low[module] = min(low[module], index[target])
    return components


def test_there_are_no_import_cycles() -> None:
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n\n".join("\n".join(c) for c in cycles)


@pytest.mark.parametrize(
    ("module", "planted", "members"),
    [
        (  # the runner imports spec; spec now needs the runner for a type
            "lab/bench/spec.py",
            "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import lab.bench.runner\n",
            {"lab.bench.spec", "lab.bench.runner"},
        ),
        (  # the runtime imports the failpoints; a failpoint function now imports the runtime
            "dbos_publishers/_failpoints.py",
            "def _planted() -> None:\n    import dbos_publishers._runtime\n",
            {"dbos_publishers._failpoints", "dbos_publishers._runtime"},
        ),
    ],
)
def test_a_planted_cycle_is_caught(
    tmp_path: Path, module: str, planted: str, members: set[str]
) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    target = tmp_path / module
    target.write_text(target.read_text() + "\n\n" + planted)
    done = subprocess.run(
        [sys.executable, "-c", CHECK_ELSEWHERE, __file__],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    cycles: list[list[str]] = json.loads(done.stdout)
    assert any(members <= set(cycle) for cycle in cycles), cycles

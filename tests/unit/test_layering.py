"""The import contracts by role in .importlinter hold, and each catches a break of its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_the_import_contracts_hold() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("store/_ledger.py", "import dbos", "The store never imports DBOS"),
        ("_publisher.py", "import lab.scenarios", "The framework never imports the lab"),
        (
            "fleet/_workers.py",
            "import dbos_publishers.ops._status",
            "Nothing below ops imports ops",
        ),
        ("_runtime.py", "import dbos_publishers.contrib.events", "The framework's core never"),
        ("fleet/_orphans.py", "import dbos_publishers._runtime", "The fleet never imports the"),
        ("contrib/events.py", "import dbos_publishers._wire", "contrib uses the public API"),
    ],
)
def test_a_broken_layering_is_caught(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for package in ("dbos_publishers", "lab", "app"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / "dbos_publishers" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode == 1
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert broken, done.stdout
    assert all(line.startswith(contract) for line in broken), broken

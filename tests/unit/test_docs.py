"""The documentation site builds strictly (a broken link or anchor fails), the README stays short
and points at the guide, and the reference pages say what the code does: every CLI command,
HTTP route, exit code, failpoint, metric and public name is on its page."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import dbos_publishers
from dbos_publishers import (
    _failpoints,
    _lifecycle,  # noqa: F401 - declares cancel.after_state
    _publisher,  # noqa: F401 - declares effect.after_send
)
from dbos_publishers.ops._cli import _parser
from dbos_publishers.ops._cli_help import EXIT_CODES
from lab.cli import _parser as lab_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
README = ROOT / "README.md"
MKDOCS = Path(sys.executable).parent / "mkdocs"
README_MAX_LINES = 200
GUIDE_LINK = "docs/guides/writing-a-publisher.md"
GUIDE_LINK_WITHIN = 40  # lines from the top of the README
BUILD_TIMEOUT_SEC = 180
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
METRIC = re.compile(r"(?:MetricFamily|Histogram|Counter|Gauge)\(\s*\"(publisher_\w+)\"")


def _page(*parts: str) -> str:
    return DOCS.joinpath(*parts).read_text()


def _hook() -> ModuleType:
    """The site's build hook (docs/hooks/reference.py): how the API's app is built and its paths
    walked, shared with the generated route table."""
    spec = importlib.util.spec_from_file_location(
        "docs_reference_hook", DOCS / "hooks" / "reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _subcommands(parser: Any, prefix: str = "") -> list[str]:
    """Every subcommand of an argparse parser, nested ones as `scenario run`."""
    names = []
    for action in parser._actions:  # argparse lists its subcommands nowhere public
        choices = getattr(action, "choices", None)
        if action.__class__.__name__ == "_SubParsersAction" and isinstance(choices, dict):
            for name, sub in choices.items():
                names.append(f"{prefix}{name}")
                names += _subcommands(sub, f"{prefix}{name} ")
    return names


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """mkdocs.yml sets strict and link validation: a broken link, a missing anchor, a page left
    out of the nav or a generated table the code can no longer build fails the build."""
    assert MKDOCS.exists(), (
        f"{MKDOCS} is missing: pip install -e '.[test]' installs mkdocs-material"
    )
    built = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SEC,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "guides" / "writing-a-publisher" / "index.html").exists()
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "generated:" not in cli_page and "--batch-id" in cli_page  # the hook ran


def test_the_readme_is_short_and_points_at_the_guide_first() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    assert any(f"]({GUIDE_LINK})" in line for line in lines[:GUIDE_LINK_WITHIN])


def test_every_relative_link_of_the_readme_resolves() -> None:
    """The README is read on the forge, outside the site's build: its links are checked here."""
    targets = [t for t in LINK.findall(README.read_text()) if "://" not in t]
    assert targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, missing


def test_the_readme_publisher_uses_only_the_public_api() -> None:
    public = set(dbos_publishers.__all__)
    blocks = PYTHON_BLOCK.findall(README.read_text())
    assert blocks, "the README shows a publisher"
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dbos_"):
                assert node.module == "dbos_publishers", node.module
                assert {alias.name for alias in node.names} <= public


def test_every_cli_command_is_on_the_cli_page() -> None:
    page = _page("reference", "cli.md")
    commands = _subcommands(_parser())
    assert {"serve", "publish", "status"} <= set(commands)
    missing = [name for name in commands if f"`{name}`" not in page]
    assert not missing, f"reference/cli.md does not name {missing}"


def test_every_lab_command_is_on_the_cli_page() -> None:
    page = _page("reference", "cli.md")
    commands = _subcommands(lab_parser())
    assert {"scenario", "bench"} <= set(commands)
    missing = [name for name in commands if f"python -m lab {name}" not in page]
    assert not missing, f"reference/cli.md does not name {missing}"


def test_every_route_is_on_the_http_api_page() -> None:
    hook = _hook()
    app = hook.api_app()
    paths = hook.route_paths(app.routes)
    assert set(app.openapi()["paths"]) <= paths, "the route walk misses routes of the spec"
    page = _page("reference", "http-api.md")
    missing = sorted(path for path in paths if f"`{path}`" not in page and f" {path}`" not in page)
    assert not missing, f"reference/http-api.md does not name {missing}"


def test_every_exit_code_is_on_the_exit_codes_page() -> None:
    page = _page("reference", "exit-codes.md")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", page, re.MULTILINE)}
    missing = [code for code, _ in EXIT_CODES if code not in documented]
    assert not missing, f"reference/exit-codes.md does not list {missing}"


def test_every_failpoint_is_on_the_failpoints_page() -> None:
    page = _page("reference", "failpoints.md")
    missing = sorted(name for name in _failpoints.CATALOG if f"`{name}`" not in page)
    assert not missing, f"reference/failpoints.md does not name {missing}"


def test_every_metric_is_on_the_metrics_page() -> None:
    sources = (path.read_text() for path in (ROOT / "dbos_publishers").rglob("*.py"))
    metrics = {name for text in sources for name in METRIC.findall(text)}
    assert "publisher_messages_published" in metrics
    page = _page("reference", "metrics.md")
    missing = sorted(name for name in metrics if not re.search(rf"`{name}(_total)?`", page))
    assert not missing, f"reference/metrics.md does not name {missing}"


@pytest.mark.parametrize("name", sorted(dbos_publishers.__all__))
def test_every_public_name_is_on_the_layout_page(name: str) -> None:
    assert f"| `{name}` |" in _page("reference", "layout.md")

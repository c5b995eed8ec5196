"""The "Writing a publisher" guide's example, run as written: its module and its publishers.toml
are taken from docs/guides/writing-a-publisher.md and a batch is published through them; then the
guide's own test of that publisher, written against the public harness
(`dbos_publishers.testing`), is run as the guide gives it."""

from __future__ import annotations

import inspect
import re
import sqlite3
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbos_publishers import ChunkSpec
from lab.paths import REPO_ROOT as PROJECT_ROOT
from tests.helpers import process_state_restored
from tests.inprocess.conftest import StartService

GUIDE = PROJECT_ROOT / "docs" / "guides" / "writing-a-publisher.md"
EXAMPLE = "example:publisher"
EXAMPLE_TEST = "example:publisher-test"
BLOCK = re.compile(r"```(python|toml)\n(.*?)```", re.DOTALL)
MESSAGES = 250  # chunks of 100: two full, one short


def _between(marker: str) -> str:
    """The guide's text between `<!-- marker:start -->` and `<!-- marker:end -->`."""
    guide = GUIDE.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    assert guide.count(start) == guide.count(end) == 1, f"the {marker} markers are gone"
    return guide[guide.index(start) : guide.index(end)]


def example_blocks() -> dict[str, str]:
    """The python and toml blocks between the guide's example markers."""
    blocks = dict(BLOCK.findall(_between(EXAMPLE)))
    assert set(blocks) == {"python", "toml"}, "the example needs one python and one toml block"
    return blocks


def example_test_block() -> str:
    """The one python block between the guide's example-test markers."""
    blocks = BLOCK.findall(_between(EXAMPLE_TEST))
    assert [kind for kind, _ in blocks] == ["python"], "the example test is one python block"
    return str(blocks[0][1])


def _install(blocks: dict[str, str], where: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Write the example's module into `where`, importable; its module name."""
    (entry,) = tomllib.loads(blocks["toml"])["publishers"]
    module = str(entry["class"]).partition(":")[0]
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{module}.py").write_text(blocks["python"])
    monkeypatch.syspath_prepend(str(where))
    return module


@pytest.fixture
def example_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The example's publishers.toml entries; its module is importable from tmp_path."""
    blocks = example_blocks()
    module = _install(blocks, tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)  # the example's relative paths
    yield blocks["toml"]
    sys.modules.pop(module, None)


def test_the_guide_publisher_example_runs(
    start_service: StartService, example_module: str, tmp_path: Path
) -> None:
    service = start_service(example_module)
    ((name, publisher),) = service.rt.publishers.items()
    assert publisher.delivery_policy.max_attempts == 3  # [publishers.options.delivery_retry]
    summary = service.publish(name, MESSAGES)

    assert (summary["published"], summary["failed"], summary["chunks"]) == (MESSAGES, 0, 3)
    state = service.ledger_state({"b1": MESSAGES})
    assert state.report.ok, state.report.violations
    assert state.local_counters == [(name, "default", MESSAGES)]
    assert state.global_counters == {"default": MESSAGES}
    service.stop()  # closes the example's connection
    (entry,) = tomllib.loads(example_module)["publishers"]
    with sqlite3.connect(tmp_path / entry["options"]["database"]) as outbox:
        rows = dict(outbox.execute("SELECT key, body FROM outbox").fetchall())
    assert len(rows) == MESSAGES
    assert rows["b1:7"] == "default #7 team=billing"  # its body, with its nested options


def test_the_guide_test_of_the_example_passes_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide's harness-based test, beside the example's module as the guide says to put it:
    each of its `test_*` functions called with a fresh tmp_path."""
    module = _install(example_blocks(), tmp_path / "example", monkeypatch)
    namespace: dict[str, object] = {"__name__": "test_outbox_publisher"}
    try:
        exec(compile(example_test_block(), str(GUIDE), "exec"), namespace)  # noqa: S102
        tests = {name: f for name, f in namespace.items() if name.startswith("test_")}
        assert tests, "the guide's test block defines no test_* function"
        for name, test in tests.items():
            assert callable(test)
            assert list(inspect.signature(test).parameters) == ["tmp_path"], name
            run = tmp_path / name
            run.mkdir()
            with process_state_restored():
                test(run)
    finally:
        sys.modules.pop(module, None)


def test_the_readme_publisher_publishes_exactly(
    start_service: StartService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's ~30-line publisher and its publishers.toml, as written."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## A publisher", 1)[1].split("\n## ", 1)[0]
    blocks = dict(BLOCK.findall(section))
    assert set(blocks) == {"python", "toml"}, "the README's publisher needs a python and a toml"
    module = _install(blocks, tmp_path / "readme", monkeypatch)
    try:
        service = start_service(blocks["toml"])
        ((name, publisher),) = service.rt.publishers.items()
        summary = service.publish(name, MESSAGES)
        assert (summary["published"], summary["failed"]) == (MESSAGES, 0)
        state = service.ledger_state({"b1": MESSAGES})
        assert state.report.ok, state.report.violations
        assert state.local_counters == [(name, "default", MESSAGES)]
        chunk = ChunkSpec(batch_id="b1", topic="default", index=0, start=0, count=1, messages=None)
        assert publisher.bodies(chunk) == ["hi #0 on default"]  # its [publishers.options]
    finally:
        sys.modules.pop(module, None)

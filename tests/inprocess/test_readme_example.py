"""The README's "Writing your own publisher" example, run as written: its module and its
publishers.toml are taken from README.md, and a batch is published through them."""

from __future__ import annotations

import re
import sqlite3
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.paths import REPO_ROOT as PROJECT_ROOT
from tests.inprocess.conftest import StartService

START, END = "<!-- example:publisher:start -->", "<!-- example:publisher:end -->"
BLOCK = re.compile(r"```(python|toml)\n(.*?)```", re.DOTALL)
MESSAGES = 250  # chunks of 100: two full, one short


def example_blocks() -> dict[str, str]:
    """The python and toml blocks between the README's example markers."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert readme.count(START) == readme.count(END) == 1, "the example markers are gone"
    example = readme[readme.index(START) : readme.index(END)]
    blocks = dict(BLOCK.findall(example))
    assert set(blocks) == {"python", "toml"}, "the example needs one python and one toml block"
    return blocks


@pytest.fixture
def example_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The example's publishers.toml entries; its module is importable from tmp_path."""
    blocks = example_blocks()
    (entry,) = tomllib.loads(blocks["toml"])["publishers"]
    module = entry["class"].partition(":")[0]
    (tmp_path / f"{module}.py").write_text(blocks["python"])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the example's relative paths
    yield blocks["toml"]
    sys.modules.pop(module, None)


def test_the_readme_publisher_example_runs(
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
    assert rows["b1:7"] == "default #7 team=billing"  # its generate, with its nested options

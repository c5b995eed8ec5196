"""The chaos schedule, the progress line and the catalog's shape, without a database."""

from __future__ import annotations

import io

import pytest

from lab.scenarios import chaos
from lab.scenarios.catalog import catalog, plan_batches
from lab.scenarios.progress import Progress


def test_the_same_seed_gives_the_same_kill_schedule() -> None:
    first = chaos.kill_schedule(20, seed=3)
    assert first == chaos.kill_schedule(20, seed=3)
    assert first != chaos.kill_schedule(20, seed=4)
    points = [f.kill_at for f in first]
    assert len(points) == 20 and points == sorted(points)
    assert points[0] >= chaos.FIRST_KILL_AT and points[-1] <= chaos.LAST_KILL_AT
    assert all(f.ends == "killed" and f.failpoints == chaos.PACE for f in first)


def test_chaos_spreads_ten_thousand_messages_over_publishers_and_topics() -> None:
    batches = plan_batches(catalog()["chaos"], 10_200)
    assert sum(b.count for b in batches) == 10_200
    assert len({b.publisher for b in batches}) == 3 and len({b.topic for b in batches}) == 2
    assert catalog()["chaos"].chaos_kills >= 20


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("ci", "shown"), [("", True), ("true", False)])
def test_progress_shows_on_a_terminal_and_stays_quiet_in_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, shown: bool
) -> None:
    monkeypatch.setenv("CI", ci)
    stream = _Terminal()
    Progress(stream).update("ledger 10/20")
    assert ("ledger 10/20" in stream.getvalue()) is shown


def test_progress_stays_quiet_when_output_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    stream = io.StringIO()
    Progress(stream).update("ledger 10/20")
    assert stream.getvalue() == ""

"""The batch list's filters as typed: `--since` durations and times, the cursor's shape, and the
states the parser, the route and the store agree on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest

from dbos_publishers._config import Settings
from dbos_publishers._errors import BadInputError
from dbos_publishers.ops import _batch_list as batch_list
from dbos_publishers.ops import _batch_routes as batch_routes
from dbos_publishers.ops import _cli as cli
from dbos_publishers.store._batch_list import LISTED_STATES

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-12-01T08:00:00", datetime(2026, 12, 1, 8, tzinfo=UTC)),
        ("2026-12-01T08:00:00+01:00", datetime(2026, 12, 1, 7, tzinfo=UTC)),
    ],
)
def test_since_is_a_duration_before_now_or_a_time(text: str, expected: datetime) -> None:
    assert batch_list.parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-5m", "1w"])
def test_anything_else_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(BadInputError, match=f"since '{text}' is neither a duration"):
        batch_list.parse_since(text, NOW)


def test_a_cursor_that_is_no_batch_id_is_refused_before_any_read() -> None:
    with pytest.raises(BadInputError, match="cursor 'a/b' is not a batch id"):
        batch_list.batch_filter(after="a/b")


def test_the_parser_the_route_and_the_store_name_the_same_states() -> None:
    assert cli.LISTED_STATES == LISTED_STATES == get_args(batch_routes.State)


def test_listing_where_nothing_was_ever_recorded_creates_no_sqlite_file(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "DBOS_SYSTEM_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite'}",
            "APP_DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite'}",
        }
    )
    page = batch_list.gather(settings, batch_list.batch_filter())
    assert (page.rows, page.next) == ([], None)
    assert batch_list.render(page) == "no batches match"
    assert list(tmp_path.iterdir()) == []

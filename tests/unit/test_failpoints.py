"""Unit tests for _failpoints: spec parsing and in-process firing (never the crash action)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from dbos_publishers import _failpoints as failpoints
from dbos_publishers._failpoints import (
    Failpoint,
    FailpointError,
    FailpointSpecError,
    TransientFailpointError,
    Trigger,
    failpoint,
)

NAME = "chunk.start"


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    failpoints.arm("")
    yield
    failpoints.arm("")


@pytest.fixture
def private_catalog(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A copy of the catalog, so names declared by a test do not leak into other tests."""
    catalog = dict(failpoints.CATALOG)
    monkeypatch.setattr(failpoints, "CATALOG", catalog)
    return catalog


def fire_pattern(hits: int, name: str = NAME) -> list[bool]:
    """Hit `name` `hits` times; True where it raised a FailpointError."""
    pattern = []
    for _ in range(hits):
        try:
            failpoint(name)
        except FailpointError:
            pattern.append(True)
        else:
            pattern.append(False)
    return pattern


# ---- parse -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("chunk.start=crash", Failpoint(NAME, "crash", Trigger(nth=1))),
        ("chunk.start=raise", Failpoint(NAME, "raise", Trigger(nth=1))),
        ("chunk.start=raise-transient", Failpoint(NAME, "raise-transient", Trigger(nth=1))),
        ("chunk.start=hang", Failpoint(NAME, "hang", Trigger(nth=1))),
        ("chunk.start=delay(50)", Failpoint(NAME, "delay", Trigger(nth=1), delay_ms=50)),
        ("chunk.start=delay(0)", Failpoint(NAME, "delay", Trigger(nth=1), delay_ms=0)),
        ("chunk.start=crash@3", Failpoint(NAME, "crash", Trigger(nth=3))),
        ("chunk.start=raise@1", Failpoint(NAME, "raise", Trigger(nth=1))),
        ("chunk.start=raise@every", Failpoint(NAME, "raise", Trigger(nth=None))),
        (
            "chunk.start=delay(7)@every",
            Failpoint(NAME, "delay", Trigger(nth=None), delay_ms=7),
        ),
        ("chunk.start=hang@p0.25", Failpoint(NAME, "hang", Trigger(None, 0.25))),
        ("chunk.start=raise-transient@p1", Failpoint(NAME, "raise-transient", Trigger(None, 1.0))),
    ],
)
def test_parse_accepts(entry: str, expected: Failpoint) -> None:
    assert failpoints.parse(entry) == {NAME: expected}


def test_parse_several_entries_and_blank_parts() -> None:
    points = failpoints.parse(
        " chunk.before_commit=crash@3 ; ; fanin.after_result=delay(50)@every ;"
    )
    assert points == {
        "chunk.before_commit": Failpoint("chunk.before_commit", "crash", Trigger(nth=3)),
        "fanin.after_result": Failpoint(
            "fanin.after_result", "delay", Trigger(nth=None), delay_ms=50
        ),
    }


@pytest.mark.parametrize("spec", ["", "   ", ";", " ; ; "])
def test_parse_empty(spec: str) -> None:
    assert failpoints.parse(spec) == {}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("chunk.start=raise@0", "the hit number starts at 1"),
        ("chunk.start=raise@p0", "probability must be in (0, 1]"),
        ("chunk.start=raise@p1.5", "probability must be in (0, 1]"),
        ("chunk.start=raise@p1.2.3", "probability must be in (0, 1]"),
        ("chunk.start=explode", "cannot parse"),
        ("chunk.start=delay", "cannot parse"),
        ("chunk.start=delay()", "cannot parse"),
        ("chunk.start=delay(-1)", "cannot parse"),
        ("chunk.start=raise@", "cannot parse"),
        ("chunk.start=raise@-1", "cannot parse"),
        ("chunk.start=raise@p", "cannot parse"),
        ("chunk.start=raise@sometimes", "cannot parse"),
        ("chunk.start", "cannot parse"),
        ("chunk.start = raise", "cannot parse"),
        ("Chunk.start=raise", "cannot parse"),
    ],
)
def test_parse_refuses_malformed_entry(entry: str, problem: str) -> None:
    with pytest.raises(FailpointSpecError) as excinfo:
        failpoints.parse(f"batch.start=raise;{entry}")
    message = str(excinfo.value)
    assert f"'{entry}'" in message
    assert problem in message
    assert message.startswith("APP_FAILPOINTS")


def test_parse_refuses_unknown_name() -> None:
    with pytest.raises(FailpointSpecError) as excinfo:
        failpoints.parse("chunk.strat=raise")
    message = str(excinfo.value)
    assert "unknown failpoint 'chunk.strat'" in message
    assert "chunk.start" in message  # the known names are listed


def test_parse_refuses_duplicate_name() -> None:
    with pytest.raises(FailpointSpecError, match=re.escape("'chunk.start' appears twice")):
        failpoints.parse("chunk.start=raise;batch.start=raise;chunk.start=delay(5)@every")


# ---- arm + failpoint ---------------------------------------------------------------------


def test_unarmed_failpoint_is_a_no_op() -> None:
    assert fire_pattern(5) == [False] * 5
    assert failpoints.fired_counts() == {}


def test_empty_spec_disarms() -> None:
    failpoints.arm(f"{NAME}=raise@every")
    with pytest.raises(FailpointError):
        failpoint(NAME)
    assert failpoints.arm("") == {}
    assert fire_pattern(3) == [False] * 3
    assert failpoints.fired_counts() == {}


def test_arm_returns_parsed_points_and_refuses_bad_spec() -> None:
    assert failpoints.arm(f"{NAME}=raise@2") == {NAME: Failpoint(NAME, "raise", Trigger(nth=2))}
    with pytest.raises(FailpointSpecError):
        failpoints.arm(f"{NAME}=raise@0")


def test_default_trigger_fires_on_first_hit_only() -> None:
    failpoints.arm(f"{NAME}=raise")
    assert fire_pattern(4) == [True, False, False, False]


def test_nth_trigger_fires_only_on_that_hit() -> None:
    failpoints.arm(f"{NAME}=raise@3")
    failpoint(NAME)  # hit 1 returns
    failpoint(NAME)  # hit 2 returns
    with pytest.raises(FailpointError, match=re.escape(f"failpoint {NAME} raised")) as excinfo:
        failpoint(NAME)
    assert not isinstance(excinfo.value, TransientFailpointError)
    failpoint(NAME)  # hit 4 returns again
    assert failpoints.fired_counts() == {NAME: 1}


def test_other_names_do_not_fire_or_count() -> None:
    failpoints.arm(f"{NAME}=raise@2")
    assert fire_pattern(3, name="batch.start") == [False] * 3
    assert fire_pattern(3) == [False, True, False]


def test_raise_transient() -> None:
    failpoints.arm(f"{NAME}=raise-transient")
    with pytest.raises(TransientFailpointError, match="transient"):
        failpoint(NAME)


def test_every_fires_each_time() -> None:
    failpoints.arm(f"{NAME}=raise@every")
    assert fire_pattern(5) == [True] * 5
    assert failpoints.fired_counts() == {NAME: 5}


def test_probability_one_always_fires() -> None:
    failpoints.arm(f"{NAME}=raise@p1")
    assert fire_pattern(20) == [True] * 20


def test_probability_same_seed_same_pattern() -> None:
    failpoints.arm(f"{NAME}=raise@p0.5", seed=1234)
    first = fire_pattern(64)
    failpoints.arm(f"{NAME}=raise@p0.5", seed=1234)
    second = fire_pattern(64)
    assert first == second
    assert any(first)
    assert not all(first)


def test_probability_different_seeds_can_differ() -> None:
    patterns = set()
    for seed in range(5):
        failpoints.arm(f"{NAME}=raise@p0.5", seed=seed)
        patterns.add(tuple(fire_pattern(64)))
    assert len(patterns) > 1


def test_delay_sleeps_and_returns() -> None:
    failpoints.arm(f"{NAME}=delay(30)@every")
    started = time.monotonic()
    failpoint(NAME)
    failpoint(NAME)
    assert time.monotonic() - started >= 0.06
    assert failpoints.fired_counts() == {NAME: 2}


# ---- declare -----------------------------------------------------------------------------


def test_declare_lets_a_new_name_be_parsed(private_catalog: dict[str, str]) -> None:
    with pytest.raises(FailpointSpecError, match="unknown failpoint"):
        failpoints.parse("mine.step-1=raise")
    failpoints.declare("mine.step-1", "my own publisher's step")
    assert private_catalog["mine.step-1"] == "my own publisher's step"
    assert failpoints.parse("mine.step-1=raise") == {
        "mine.step-1": Failpoint("mine.step-1", "raise", Trigger(nth=1))
    }


def test_declare_keeps_an_existing_description(private_catalog: dict[str, str]) -> None:
    before = private_catalog[NAME]
    failpoints.declare(NAME, "something else")
    assert private_catalog[NAME] == before


@pytest.mark.parametrize("name", ["", "Mine", "1mine", ".mine", "mine step", "mine=x", "mine\n"])
def test_declare_refuses_bad_names(private_catalog: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match="is invalid"):
        failpoints.declare(name, "bad")
    assert name not in private_catalog

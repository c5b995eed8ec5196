"""Unit tests for publisher options: parsed from publishers.toml (nested tables and arrays too),
checked by each class's options model before anything starts, refused in one line."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from dbos_publishers import DeliveryOptions, Publisher, RetryPolicy
from dbos_publishers import _failpoints as failpoints
from dbos_publishers import _runtime as runtime
from dbos_publishers._config import ConfigError, DatabaseUrl, Settings, load_declarations
from dbos_publishers.contrib.events import EventPublisher
from dbos_publishers.contrib.jsonl import JsonlFilePublisher
from dbos_publishers.contrib.webhook import WebhookPublisher
from tests.helpers import InProcessCli

WEBHOOK = "dbos_publishers.contrib.webhook:WebhookPublisher"
NO_KEY = "lab.publishers.broken:NoIdempotencyKeyPublisher"
BAD_URL = "WebhookPublisher option 'endpoint': "
WEBHOOK_TAKES = "(it takes: delivery_retry, endpoint, timeout, headers)"


def declare(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "publishers.toml"
    path.write_text(text)
    return path


def settings_for(path: Path, failpoints: str = "") -> Settings:
    publishers, queues = load_declarations(path)
    return Settings(
        system_db=DatabaseUrl.parse(f"sqlite:///{path.parent / 'sys.sqlite'}", "system"),
        app_db=DatabaseUrl.parse(f"sqlite:///{path.parent / 'app.sqlite'}", "app"),
        publishers=publishers,
        queues=queues,
        failpoints=failpoints,
    )


def webhook_entry(name: str = "hooks", cls: str = WEBHOOK, options: str = "") -> str:
    return f'[[publishers]]\nname = "{name}"\nclass = "{cls}"\n[publishers.options]\n{options}'


def refusal(tmp_path: Path, options: str, cls: str = WEBHOOK) -> str:
    """The one line `validate` refuses a webhook declaration with."""
    path = declare(tmp_path, webhook_entry(cls=cls, options=options))
    with pytest.raises(ConfigError) as refused:
        runtime.validate(settings_for(path))
    return str(refused.value)


# ---- parsing ------------------------------------------------------------------------------


def test_options_attach_to_the_latest_publisher(tmp_path: Path) -> None:
    text = (
        '[[publishers]]\nname = "plain"\n'
        + webhook_entry(options='endpoint = "http://127.0.0.1:9/x"\nretries = 3\n')
        + '[[publishers]]\nname = "last"\n[publishers.options]\nflag = true\nratio = 0.5\n'
    )
    publishers, _ = load_declarations(declare(tmp_path, text))
    assert [p.option_map for p in publishers] == [
        {},
        {"endpoint": "http://127.0.0.1:9/x", "retries": 3},
        {"flag": True, "ratio": 0.5},
    ]


def test_nested_tables_and_arrays_are_kept(tmp_path: Path) -> None:
    options = (
        'endpoint = "http://x/"\nheaders = { A = "1" }\nrings = [[1, 2], [3]]\n'
        "[publishers.options.delivery_retry]\nmax_attempts = 2\n"
    )
    (declaration,) = load_declarations(declare(tmp_path, webhook_entry(options=options)))[0]
    assert declaration.option_map == {
        "delivery_retry": {"max_attempts": 2},
        "endpoint": "http://x/",
        "headers": {"A": "1"},
        "rings": [[1, 2], [3]],
    }


def test_a_declaration_cannot_be_changed_through_its_options(tmp_path: Path) -> None:
    options = 'headers = { A = "1" }\nrings = [1]\n'
    (declaration,) = load_declarations(declare(tmp_path, webhook_entry(options=options)))[0]
    copy = declaration.option_map
    headers, rings = copy["headers"], copy["rings"]
    assert isinstance(headers, dict)
    assert isinstance(rings, list)
    headers["A"] = "changed"
    rings.append(2)
    assert declaration.option_map == {"headers": {"A": "1"}, "rings": [1]}  # a fresh copy
    stored = declaration.options["headers"]
    assert isinstance(stored, Mapping)
    with pytest.raises(TypeError):
        stored["A"] = "changed"  # type: ignore[index]


@pytest.mark.parametrize(
    ("options", "where", "kind"),
    [
        ("when = 1979-05-27T07:32:00Z\n", "when", "datetime"),
        ("day = 1979-05-27\n", "day", "date"),
        ("t = { at = 07:32:00 }\n", "t.at", "time"),
        ("days = [1979-05-27]\n", "days[0]", "date"),
    ],
)
def test_values_json_cannot_hold_are_refused(
    tmp_path: Path, options: str, where: str, kind: str
) -> None:
    path = declare(tmp_path, webhook_entry(options=options))
    message = (
        f"publisher 'hooks': option '{where}' must be a string, number, boolean, array or table, "
        f"not {kind}"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_declarations(path)


def test_options_that_are_not_a_table_are_refused(tmp_path: Path) -> None:
    path = declare(tmp_path, '[[publishers]]\nname = "hooks"\noptions = "endpoint"\n')
    with pytest.raises(ConfigError, match="publisher 'hooks': options must be a table"):
        load_declarations(path)


# ---- validation by class ------------------------------------------------------------------


def test_class_without_options_refuses_any(tmp_path: Path) -> None:
    message = "publisher 'hooks': EventPublisher takes no options (got: a, b)"
    cls = "dbos_publishers.contrib.events:EventPublisher"
    assert refusal(tmp_path, "b = 1\na = 2\n", cls=cls) == message


def test_class_without_options_accepts_none(tmp_path: Path) -> None:
    runtime.validate(settings_for(declare(tmp_path, '[[publishers]]\nname = "plain"\n')))
    assert EventPublisher.validate_options({}) == EventPublisher.Options()


@pytest.mark.parametrize("cls", [WEBHOOK, NO_KEY])
@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:8080/deliveries", "https://hooks.example/in", "http://localhost"]
)
def test_webhook_accepts_an_http_endpoint(tmp_path: Path, cls: str, endpoint: str) -> None:
    path = declare(tmp_path, webhook_entry(cls=cls, options=f'endpoint = "{endpoint}"\n'))
    blueprint = runtime.validate(settings_for(path))
    assert blueprint.classes["hooks"].__name__ == cls.rpartition(":")[2]


def test_webhook_options_are_typed_with_their_defaults() -> None:
    options = WebhookPublisher.validate_options({"endpoint": "https://h.example/in"})
    assert isinstance(options, WebhookPublisher.Options)
    assert str(options.endpoint) == "https://h.example/in"
    assert (options.timeout, options.headers, options.delivery_retry) == (10.0, {}, None)


def test_webhook_takes_nested_options() -> None:
    options = WebhookPublisher.validate_options(
        {
            "endpoint": "http://x/",
            "timeout": 2,
            "headers": {"Authorization": "Bearer t"},
            "delivery_retry": {"max_attempts": 2, "interval_seconds": 0},
        }
    )
    assert isinstance(options, WebhookPublisher.Options)
    assert options.timeout == 2.0
    assert options.headers == {"Authorization": "Bearer t"}
    assert options.delivery_retry == RetryPolicy(max_attempts=2, interval_seconds=0)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("", "WebhookPublisher needs option 'endpoint'"),
        (
            'endpoint = "ftp://127.0.0.1/x"\n',
            BAD_URL + "URL scheme should be 'http' or 'https' (got 'ftp://127.0.0.1/x')",
        ),
        (
            'endpoint = "http://"\n',
            BAD_URL + "Input should be a valid URL, empty host (got 'http://')",
        ),
        (
            'endpoint = "127.0.0.1:80"\n',
            BAD_URL
            + "Input should be a valid URL, relative URL without a base (got '127.0.0.1:80')",
        ),
        ("endpoint = 8080\n", BAD_URL + "URL input should be a string or URL (got 8080)"),
        (
            'endpoint = "http://x/"\ntimout = 3\n',
            f"WebhookPublisher has no option 'timout' {WEBHOOK_TAKES}",
        ),
        (
            'endpoint = "http://x/"\ntimeout = 0\n',
            "WebhookPublisher option 'timeout': Input should be greater than 0 (got 0)",
        ),
        (
            'endpoint = "http://x/"\nheaders = { A = 1 }\n',
            "WebhookPublisher option 'headers.A': Input should be a valid string (got 1)",
        ),
        (
            'endpoint = "http://x/"\ndelivery_retry = { max_attempts = 0 }\n',
            "WebhookPublisher option 'delivery_retry.max_attempts': Input should be greater than "
            "or equal to 1 (got 0)",
        ),
        (
            'endpoint = "http://x/"\ndelivery_retry = { tries = 3 }\n',
            "WebhookPublisher has no option 'delivery_retry.tries'",
        ),
        (
            'endpoint = "ftp://x/"\ntimeout = -1\ncolour = "red"\n',
            f"WebhookPublisher has no option 'colour' {WEBHOOK_TAKES} (and 2 more problems)",
        ),
    ],
)
def test_webhook_refuses_bad_options_in_one_line(
    tmp_path: Path, options: str, problem: str
) -> None:
    assert refusal(tmp_path, options) == f"publisher 'hooks': {problem}"


def test_a_long_bad_value_is_shortened(tmp_path: Path) -> None:
    message = refusal(tmp_path, f'endpoint = "ftp://{"x" * 200}"\n')
    assert "\n" not in message
    assert message.endswith("...)")
    assert len(message) < 200  # the value alone is 206 characters


def test_jsonl_needs_a_path() -> None:
    with pytest.raises(ConfigError, match=r"^JsonlFilePublisher needs option 'path'$"):
        JsonlFilePublisher.validate_options({})
    options = JsonlFilePublisher.validate_options({"path": "out/deliveries.jsonl"})
    assert isinstance(options, JsonlFilePublisher.Options)
    assert options.path == Path("out/deliveries.jsonl")


# ---- the delivery retry policy -------------------------------------------------------------


def detached(cls: type[Publisher], options: Mapping[str, object]) -> Publisher:
    """A publisher with its options and nothing else (no DBOS registration)."""
    publisher = cls.__new__(cls)
    publisher.options = cls.validate_options(options)
    return publisher


def test_the_class_policy_applies_unless_an_option_sets_one() -> None:
    endpoint = {"endpoint": "http://x/"}
    assert detached(WebhookPublisher, endpoint).delivery_policy == RetryPolicy(5, 0.5, 2.0)
    configured = detached(WebhookPublisher, {**endpoint, "delivery_retry": {"max_attempts": 9}})
    assert configured.delivery_policy == RetryPolicy(max_attempts=9)


def test_the_delivery_retries_stop_for_permanent_errors() -> None:
    publisher = detached(WebhookPublisher, {"endpoint": "http://x/"})
    assert publisher.should_retry_delivery(ConnectionError("refused"))
    assert publisher.should_retry_delivery(failpoints.TransientFailpointError("x"))
    assert not publisher.should_retry_delivery(failpoints.FailpointError("x"))


def test_a_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff_rate"):
        RetryPolicy(backoff_rate=0.5)


def test_delivery_options_are_a_model_subclasses_extend() -> None:
    class ArchiveOptions(DeliveryOptions):
        directory: Path

    class Archive(EventPublisher):
        Options = ArchiveOptions

    message = "Archive has no option 'dir' (it takes: delivery_retry, directory)"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)} \\(and 1 more problem\\)$"):
        Archive.validate_options({"dir": "x"})


# ---- the command line, in this process ------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> InProcessCli:
    env = {
        "APP_PUBLISHERS_FILE": str(tmp_path / "publishers.toml"),
        "DBOS_SYSTEM_DATABASE_URL": f"sqlite:///{tmp_path / 'sys.sqlite'}",
        "APP_DATABASE_URL": f"sqlite:///{tmp_path / 'app.sqlite'}",
        "APP_FAILPOINTS": "",
    }
    return InProcessCli(capture=capfd, cwd=tmp_path, env=env)


def test_a_bad_option_stops_a_command_with_one_line(cli: InProcessCli, tmp_path: Path) -> None:
    declare(tmp_path, webhook_entry(options='endpoint = "http://x/"\ntimout = 3\n'))
    done = cli("publish", "hooks", "--count", "1")
    assert done.returncode == 2
    assert done.stdout == ""
    assert (
        done.stderr
        == f"error: publisher 'hooks': WebhookPublisher has no option 'timout' {WEBHOOK_TAKES}\n"
    )
    assert not (tmp_path / "sys.sqlite").exists()  # nothing written


CUSTOM_POINT_MODULE = """
from dbos_publishers import _failpoints as failpoints
from dbos_publishers.contrib.events import EventPublisher

failpoints.declare("custom.after_thing", "declared when this module is imported")


class CustomPointPublisher(EventPublisher):
    pass
"""


@pytest.mark.parametrize(("declared", "first_problem"), [(True, "count"), (False, "failpoint")])
def test_failpoints_declared_by_publisher_classes_are_known_to_commands(
    cli: InProcessCli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    declared: bool,
    first_problem: str,
) -> None:
    """Only importing the declared class declares its failpoint; a command does that before it
    parses APP_FAILPOINTS, so the spec is refused only when the class is not declared."""
    monkeypatch.setattr(failpoints, "CATALOG", dict(failpoints.CATALOG))  # undone after the test
    (tmp_path / "custom_point.py").write_text(CUSTOM_POINT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "custom_point", raising=False)
    cls = (
        "custom_point:CustomPointPublisher"
        if declared
        else "dbos_publishers.contrib.events:EventPublisher"
    )
    declare(tmp_path, f'[[publishers]]\nname = "custom"\nclass = "{cls}"\n')
    done = cli("publish", "custom", "--count", "0", APP_FAILPOINTS="custom.after_thing=crash")
    assert done.returncode == 2
    expected = {
        "count": "error: count must be between 1 and ",
        "failpoint": "error: APP_FAILPOINTS: unknown failpoint 'custom.after_thing' ",
    }[first_problem]
    assert done.stderr.startswith(expected), done.stderr

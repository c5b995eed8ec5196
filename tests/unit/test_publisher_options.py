"""Unit tests for publisher options: parsed from publishers.toml, refused by class before use."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import runtime
from app.config import ConfigError, DatabaseUrl, Settings, load_declarations

WEBHOOK = "app.publishers.webhook:WebhookPublisher"
NO_KEY = "app.publishers.broken:NoIdempotencyKeyPublisher"
NEEDS_ENDPOINT = "needs option endpoint = an http(s) URL, not "


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


# ---- parsing ------------------------------------------------------------------------------


def test_options_attach_to_the_latest_publisher(tmp_path: Path) -> None:
    text = (
        '[[publishers]]\nname = "plain"\n'
        + webhook_entry(options='endpoint = "http://127.0.0.1:9/x"\nretries = 3\n')
        + '[[publishers]]\nname = "last"\n[publishers.options]\nflag = true\nratio = 0.5\n'
    )
    publishers, _ = load_declarations(declare(tmp_path, text))
    assert [p.options for p in publishers] == [
        (),
        (("endpoint", "http://127.0.0.1:9/x"), ("retries", 3)),
        (("flag", True), ("ratio", 0.5)),
    ]
    assert publishers[1].option_map == {"endpoint": "http://127.0.0.1:9/x", "retries": 3}


@pytest.mark.parametrize(
    ("value", "kind"),
    [("[1, 2]", "list"), ("{ a = 1 }", "dict"), ("1979-05-27T07:32:00Z", "datetime")],
)
def test_non_scalar_option_is_refused(tmp_path: Path, value: str, kind: str) -> None:
    path = declare(tmp_path, webhook_entry(options=f"endpoint = {value}\n"))
    message = (
        f"publisher 'hooks': option 'endpoint' must be a string, number or boolean, not {kind}"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_declarations(path)


def test_options_that_are_not_a_table_are_refused(tmp_path: Path) -> None:
    path = declare(tmp_path, '[[publishers]]\nname = "hooks"\noptions = "endpoint"\n')
    with pytest.raises(ConfigError, match="publisher 'hooks': options must be a table"):
        load_declarations(path)


# ---- validation by class ------------------------------------------------------------------


def test_class_without_options_refuses_any(tmp_path: Path) -> None:
    path = declare(
        tmp_path,
        webhook_entry(cls="app.publishers.events:EventPublisher", options="b = 1\na = 2\n"),
    )
    message = "publisher 'hooks': publisher class EventPublisher takes no options (got: a, b)"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        runtime.validate(settings_for(path))


def test_class_without_options_accepts_none(tmp_path: Path) -> None:
    runtime.validate(settings_for(declare(tmp_path, '[[publishers]]\nname = "plain"\n')))


@pytest.mark.parametrize("cls", [WEBHOOK, NO_KEY])
@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:8080/deliveries", "https://hooks.example/in", "http://localhost"]
)
def test_webhook_accepts_an_http_endpoint(tmp_path: Path, cls: str, endpoint: str) -> None:
    path = declare(tmp_path, webhook_entry(cls=cls, options=f'endpoint = "{endpoint}"\n'))
    runtime.validate(settings_for(path))


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ("", NEEDS_ENDPOINT + "None"),
        ('endpoint = "ftp://127.0.0.1/x"\n', NEEDS_ENDPOINT + "'ftp://127.0.0.1/x'"),
        ('endpoint = "http://"\n', NEEDS_ENDPOINT + "'http://'"),
        ('endpoint = "127.0.0.1:80"\n', NEEDS_ENDPOINT + "'127.0.0.1:80'"),
        ("endpoint = 8080\n", NEEDS_ENDPOINT + "8080"),
        ('endpoint = "http://x/"\ntimeout = 3\n', "takes only 'endpoint' (got: timeout)"),
    ],
)
def test_webhook_refuses_bad_options(tmp_path: Path, options: str, problem: str) -> None:
    message = f"publisher 'hooks': WebhookPublisher {problem}"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        runtime.validate(settings_for(declare(tmp_path, webhook_entry(options=options))))


def test_validate_knows_failpoints_declared_by_publisher_classes(tmp_path: Path) -> None:
    """In a fresh interpreter, where only loading the declared class can declare the failpoint."""
    path = declare(tmp_path, webhook_entry(options='endpoint = "http://127.0.0.1:9/x"\n'))
    code = (
        "import sys; from app import runtime; from app.config import Settings; "
        "assert 'app.publishers.webhook' not in sys.modules; "
        "env = {'APP_PUBLISHERS_FILE': sys.argv[1], 'APP_FAILPOINTS': 'effect.after_send=crash'}; "
        "runtime.validate(Settings.from_env(env))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr

"""Unit tests for _config: database URLs, publisher declarations and settings from the env."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbos_publishers._config import (
    DEFAULT_APP_DATABASE_URL,
    DEFAULT_PUBLISHERS_FILE,
    DEFAULT_SYSTEM_DATABASE_URL,
    ConfigError,
    DatabaseUrl,
    LeaseSettings,
    PublisherDeclaration,
    QueueSettings,
    Settings,
    load_declarations,
    logger_levels,
)
from dbos_publishers._declarations import DEFAULT_CHUNK_SIZE, MAX_PUBLISHERS_FILE_BYTES
from dbos_publishers._errors import BadInputError
from dbos_publishers._runtime import validate
from dbos_publishers.ops._api import refuse_an_open_api
from lab.paths import REPO_ROOT as PROJECT_ROOT

LABEL = "APP_DATABASE_URL"
PG_WITH_PASSWORD = "postgresql://alice:hunter2@db.example:6543/publishing"

VALID_TOML = """
[defaults]
chunk_size = 100

[queues]
chunk_concurrency = 3
batch_concurrency = 2
polling_interval_sec = 0.5
chunk_prefetch = 1

[[publishers]]
name = "orders"

[[publishers]]
name = "billing"
class = "dbos_publishers.contrib.events:EventPublisher"
chunk_size = 25
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "publishers.toml"
    path.write_text(text)
    return path


def publishers_file(tmp_path: Path, *names: str) -> Path:
    return write(tmp_path, "".join(f'[[publishers]]\nname = "{n}"\n' for n in names))


# ---- DatabaseUrl.parse -------------------------------------------------------------------


def test_parse_sqlite() -> None:
    url = DatabaseUrl.parse("sqlite:///some/file.sqlite", LABEL)
    assert url.backend == "sqlite"
    assert url.raw == "sqlite:///some/file.sqlite"
    assert url.label == LABEL
    assert url.safe == "sqlite file some/file.sqlite"


@pytest.mark.parametrize(
    "raw", ["postgresql://u@localhost/db", "postgresql+psycopg://u@localhost/db"]
)
def test_parse_postgresql(raw: str) -> None:
    url = DatabaseUrl.parse(raw, LABEL)
    assert url.backend == "postgresql"
    assert url.sqlalchemy_url.drivername == "postgresql+psycopg"
    assert url.sqlalchemy_url.database == "db"


def test_parse_normalises_postgres_scheme() -> None:
    url = DatabaseUrl.parse("postgres://alice:hunter2@db.example:6543/publishing", LABEL)
    assert url.raw == PG_WITH_PASSWORD
    assert url.backend == "postgresql"
    assert url.sqlalchemy_url.drivername == "postgresql+psycopg"
    assert url.sqlalchemy_url.password == "hunter2"  # normalising must not lose the password


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("mysql://u:hunter2@h/db", "unsupported scheme 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "unsupported scheme 'postgresql+psycopg2'"),
        ("postgresql://u:hunter2@h", "must name a database"),
        ("postgres://u@h/", "must name a database"),
        ("sqlite://", "needs a file path"),
        ("garbage", "is not a valid database URL"),
        ("", "is not a valid database URL"),
    ],
)
def test_parse_refuses(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        DatabaseUrl.parse(raw, LABEL)
    message = str(excinfo.value)
    assert message.startswith(LABEL)
    assert problem in message
    assert "hunter2" not in message


def test_parse_refuses_non_numeric_port() -> None:
    with pytest.raises(ConfigError, match=LABEL):
        DatabaseUrl.parse("postgresql://u:hunter2@h:notaport/db", LABEL)


@pytest.mark.parametrize("raw", [PG_WITH_PASSWORD, "postgres://alice:hunter2@db.example/x"])
def test_password_never_shown(raw: str) -> None:
    url = DatabaseUrl.parse(raw, LABEL)
    assert "hunter2" in url.raw  # the password is kept for connecting...
    for shown in (str(url), repr(url), url.safe, f"{url}", f"{url!r}"):
        assert "hunter2" not in shown  # ...but never rendered
    assert "alice" in str(url)
    assert repr(url).startswith("DatabaseUrl(")


def test_safe_names_database_host_and_port() -> None:
    assert DatabaseUrl.parse(PG_WITH_PASSWORD, LABEL).safe == (
        "postgresql database 'publishing' on db.example:6543"
    )
    assert DatabaseUrl.parse("postgresql:///local", LABEL).safe == (
        "postgresql database 'local' on localhost:5432"
    )


# ---- load_declarations -------------------------------------------------------------------


def test_load_valid_file(tmp_path: Path) -> None:
    publishers, queues = load_declarations(write(tmp_path, VALID_TOML))
    assert publishers == (
        PublisherDeclaration("orders", "dbos_publishers.contrib.events:EventPublisher", 100),
        PublisherDeclaration("billing", "dbos_publishers.contrib.events:EventPublisher", 25),
    )
    assert queues == QueueSettings(
        chunk_concurrency=3, batch_concurrency=2, polling_interval_sec=0.5, chunk_prefetch=1
    )
    assert queues.chunk_workflows == 3


def test_load_defaults_when_optional_tables_absent(tmp_path: Path) -> None:
    publishers, queues = load_declarations(publishers_file(tmp_path, "orders"))
    assert [p.chunk_size for p in publishers] == [DEFAULT_CHUNK_SIZE] == [2000]
    assert queues == QueueSettings()


def test_load_refuses_duplicate_names(tmp_path: Path) -> None:
    path = publishers_file(tmp_path, "orders", "billing", "orders")
    with pytest.raises(ConfigError, match="publisher 'orders' is declared twice"):
        load_declarations(path)


@pytest.mark.parametrize(
    "name",
    ["Orders", "ORDERS", "a" * 41, "1orders", "_orders", "-orders", "ord ers", "ord.ers", ""],
)
def test_load_refuses_invalid_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"publisher name '{name}' is invalid")):
        load_declarations(publishers_file(tmp_path, name))


def test_load_accepts_name_of_forty_characters(tmp_path: Path) -> None:
    publishers, _ = load_declarations(publishers_file(tmp_path, "a" * 40))
    assert publishers[0].name == "a" * 40


def test_load_refuses_name_with_trailing_newline(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is invalid"):
        load_declarations(write(tmp_path, '[[publishers]]\nname = "orders\\n"\n'))


def test_load_refuses_missing_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="publisher name None is invalid"):
        load_declarations(write(tmp_path, '[[publishers]]\nclass = "a.b:C"\n'))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('colour = "red"\n[[publishers]]\nname = "a"\n', "unknown key(s) colour"),
        ('[defaults]\nsize = 1\n[[publishers]]\nname = "a"\n', "[defaults]: unknown key(s) size"),
        ('[queues]\nworkers = 1\n[[publishers]]\nname = "a"\n', "[queues]: unknown key(s) workers"),
        (
            '[[publishers]]\nname = "a"\ntopic = "t"\nzeta = 1\n',
            "[[publishers]]: unknown key(s) topic, zeta",
        ),
    ],
)
def test_load_refuses_unknown_keys(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_declarations(write(tmp_path, text))
    assert problem in str(excinfo.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[publishers]]\nname = "a"\nchunk_size = 0\n', "publisher 'a' chunk_size"),
        ('[[publishers]]\nname = "a"\nchunk_size = -5\n', "publisher 'a' chunk_size"),
        ('[[publishers]]\nname = "a"\nchunk_size = true\n', "publisher 'a' chunk_size"),
        ('[[publishers]]\nname = "a"\nchunk_size = 2.5\n', "publisher 'a' chunk_size"),
        ('[defaults]\nchunk_size = 0\n[[publishers]]\nname = "a"\n', "[defaults] chunk_size"),
        (
            '[queues]\nchunk_concurrency = 0\n[[publishers]]\nname = "a"\n',
            "[queues] chunk_concurrency",
        ),
        ('[[publishers]]\nname = "a"\nchunk_size = 1000000000\n', "publisher 'a' chunk_size"),
        ('[defaults]\nchunk_size = 100001\n[[publishers]]\nname = "a"\n', "[defaults] chunk_size"),
        (
            '[queues]\nchunk_concurrency = 100000\n[[publishers]]\nname = "a"\n',
            "[queues] chunk_concurrency",
        ),
        (
            '[queues]\nbatch_concurrency = 257\n[[publishers]]\nname = "a"\n',
            "[queues] batch_concurrency",
        ),
        ('[queues]\nchunk_prefetch = 0\n[[publishers]]\nname = "a"\n', "[queues] chunk_prefetch"),
        ('[queues]\nchunk_prefetch = 5\n[[publishers]]\nname = "a"\n', "[queues] chunk_prefetch"),
        ('[queues]\nchunk_prefetch = 1.5\n[[publishers]]\nname = "a"\n', "[queues] chunk_prefetch"),
    ],
)
def test_load_refuses_sizes_out_of_bounds(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_declarations(write(tmp_path, text))
    assert f"{problem} must be a whole number in [1, " in str(excinfo.value)


@pytest.mark.parametrize("port", [" 18102", "18102 ", "8_000", "٨٠٠٠", "+80"])
def test_an_http_port_with_anything_but_digits_is_refused(tmp_path: Path, port: str) -> None:
    with pytest.raises(ConfigError, match="APP_HTTP_PORT must be an integer"):
        Settings.from_env(
            {"APP_HTTP_PORT": port, "APP_PUBLISHERS_FILE": str(write(tmp_path, VALID_TOML))}
        )


@pytest.mark.parametrize("interval", ["0", "-1", "61", '"fast"', "true"])
def test_load_refuses_bad_polling_interval(tmp_path: Path, interval: str) -> None:
    text = f'[queues]\npolling_interval_sec = {interval}\n[[publishers]]\nname = "a"\n'
    with pytest.raises(ConfigError, match="polling_interval_sec must be a number"):
        load_declarations(write(tmp_path, text))


def test_load_refuses_bad_class_path(tmp_path: Path) -> None:
    path = write(tmp_path, '[[publishers]]\nname = "a"\nclass = "dbos_publishers.contrib.events"\n')
    with pytest.raises(ConfigError, match="publisher 'a': class must look like"):
        load_declarations(path)


@pytest.mark.parametrize(
    "text", ["", "[defaults]\nchunk_size = 10\n", "publishers = []\n", 'publishers = "a"\n']
)
def test_load_refuses_missing_publishers(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"declares no \[\[publishers\]\]"):
        load_declarations(write(tmp_path, text))


def test_load_refuses_non_table_publisher(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a table"):
        load_declarations(write(tmp_path, "publishers = [1]\n"))


def test_load_refuses_non_table_defaults(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="defaults"):
        load_declarations(write(tmp_path, 'defaults = 5\n[[publishers]]\nname = "a"\n'))


def test_load_refuses_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[[publishers]\nname = ")
    with pytest.raises(ConfigError, match="is not valid TOML") as excinfo:
        load_declarations(path)
    assert str(path) in str(excinfo.value)


def test_load_refuses_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as excinfo:
        load_declarations(path)
    assert str(path) in str(excinfo.value)


# ---- Settings ----------------------------------------------------------------------------


def test_from_env_empty_urls_mean_sqlite_defaults(tmp_path: Path) -> None:
    env = {
        "APP_PUBLISHERS_FILE": str(write(tmp_path, VALID_TOML)),
        "DBOS_SYSTEM_DATABASE_URL": "",
        "APP_DATABASE_URL": "",
    }
    settings = Settings.from_env(env)
    assert settings.system_db.raw == DEFAULT_SYSTEM_DATABASE_URL
    assert settings.system_db.label == "DBOS_SYSTEM_DATABASE_URL"
    assert settings.app_db.raw == DEFAULT_APP_DATABASE_URL
    assert settings.app_db.label == "APP_DATABASE_URL"
    assert settings.system_db.backend == settings.app_db.backend == "sqlite"


def test_from_env_reads_everything(tmp_path: Path) -> None:
    env = {
        "APP_PUBLISHERS_FILE": str(write(tmp_path, VALID_TOML)),
        "DBOS_SYSTEM_DATABASE_URL": "postgres://alice:hunter2@db.example:6543/publishing",
        "APP_DATABASE_URL": "sqlite:///app.sqlite",
        "APP_FAILPOINTS": "  chunk.start=raise  ",
        "APP_FAILPOINT_SEED": "42",
        "APP_LOG_FORMAT": "json",
        "APP_LOG_LEVEL": "debug",
        "APP_VERSION": "7",
    }
    settings = Settings.from_env(env)
    assert settings.system_db.raw == PG_WITH_PASSWORD
    assert settings.app_db.raw == "sqlite:///app.sqlite"
    assert [p.name for p in settings.publishers] == ["orders", "billing"]
    assert settings.queues.chunk_concurrency == 3
    assert settings.failpoints == "chunk.start=raise"
    assert settings.failpoint_seed == 42
    assert settings.log_format == "json"
    assert settings.log_level == "DEBUG"
    assert settings.application_version == "7"


def test_from_env_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"APP_PUBLISHERS_FILE": str(write(tmp_path, VALID_TOML))})
    assert settings.failpoints == ""
    assert settings.failpoint_seed == 0
    assert settings.log_format == "auto"
    assert settings.log_level == "INFO"
    assert settings.application_version == "1"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("APP_LOG_FORMAT", "xml", "APP_LOG_FORMAT must be auto, json or console, not 'xml'"),
        ("APP_LOG_FORMAT", "JSON", "APP_LOG_FORMAT must be auto, json or console, not 'JSON'"),
        ("APP_LOG_LEVEL", "verbose", "APP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
        ("APP_LOG_LEVEL", "CRITICAL", "APP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
        ("APP_FAILPOINT_SEED", "abc", "APP_FAILPOINT_SEED must be an integer, not 'abc'"),
        ("APP_FAILPOINT_SEED", "1.5", "APP_FAILPOINT_SEED must be an integer, not '1.5'"),
        ("APP_DATABASE_URL", "mysql://u@h/db", "APP_DATABASE_URL: unsupported scheme"),
        (
            "DBOS_SYSTEM_DATABASE_URL",
            "nonsense",
            "DBOS_SYSTEM_DATABASE_URL is not a valid database",
        ),
    ],
)
def test_from_env_refuses(tmp_path: Path, key: str, value: str, problem: str) -> None:
    env = {"APP_PUBLISHERS_FILE": str(write(tmp_path, VALID_TOML)), key: value}
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_env(env)
    assert problem in str(excinfo.value)


def test_from_env_refuses_missing_publishers_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.from_env({"APP_PUBLISHERS_FILE": str(tmp_path / "absent.toml")})


def test_publisher_lookup(tmp_path: Path) -> None:
    settings = Settings.from_env({"APP_PUBLISHERS_FILE": str(write(tmp_path, VALID_TOML))})
    assert settings.publisher("billing").chunk_size == 25
    assert settings.publisher("orders").chunk_size == 100


def test_publisher_unknown_name_lists_declared(tmp_path: Path) -> None:
    settings = Settings.from_env({"APP_PUBLISHERS_FILE": str(write(tmp_path, VALID_TOML))})
    with pytest.raises(ConfigError) as excinfo:
        settings.publisher("shipping")
    assert str(excinfo.value) == "unknown publisher 'shipping' (declared: orders, billing)"


# ---- every environment variable, odd forms -----------------------------------------------

ODD_FORMS = {
    "empty": "",
    "leading space": " 12",
    "trailing space": "12 ",
    "tab": "\t12",
    "newline": "1\n2",
    "fullwidth digits": "\uff11\uff12",
    "plus sign": "+5",
    "hex": "0x10",
    "underscores": "1_000",
}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what the tests bind to, on purpose
SECRET_VARIABLES = {"DBOS_SYSTEM_DATABASE_URL", "APP_DATABASE_URL", "APP_API_TOKEN"}
Read = Callable[[Settings], object]
# Every variable docs/reference/configuration.md documents: how to read it back, and its value
# when unset or empty.
VARIABLES: dict[str, tuple[Read, object]] = {
    "DBOS_SYSTEM_DATABASE_URL": (lambda s: s.system_db.raw, DEFAULT_SYSTEM_DATABASE_URL),
    "APP_DATABASE_URL": (lambda s: s.app_db.raw, DEFAULT_APP_DATABASE_URL),
    "APP_PUBLISHERS_FILE": (
        lambda s: s.publishers,
        # publishers.toml in the working directory, read when the test runs (it chdirs)
        lambda: load_declarations(DEFAULT_PUBLISHERS_FILE)[0],
    ),
    "APP_FAILPOINTS": (lambda s: s.failpoints, ""),
    "APP_FAILPOINT_SEED": (lambda s: s.failpoint_seed, 0),
    "APP_LOG_FORMAT": (lambda s: s.log_format, "auto"),
    "APP_LOG_LEVEL": (lambda s: s.log_level, "INFO"),
    "APP_LOG_LEVELS": (
        lambda s: dict(s.log_levels),
        {"dbos": "WARNING", "alembic": "WARNING", "uvicorn": "WARNING"},
    ),
    "APP_VERSION": (lambda s: s.application_version, "1"),
    "APP_EXECUTOR_ID": (lambda s: s.executor_id, None),
    "APP_HEARTBEAT_SEC": (lambda s: s.leases.heartbeat_sec, 2.0),
    "APP_LEASE_TTL_SEC": (lambda s: s.leases.ttl_sec, 10.0),
    "APP_CONNECTIONS": (lambda s: s.connections, 24),
    "APP_HTTP_HOST": (lambda s: s.http_host, "127.0.0.1"),
    "APP_HTTP_PORT": (lambda s: s.http_port, 8000),
    "APP_API_TOKEN": (lambda s: s.api_token, None),
    "APP_ALLOWED_HOSTS": (lambda s: ",".join(s.allowed_hosts), "localhost,127.0.0.1,::1"),
    "APP_ALLOW_NO_TOKEN": (lambda s: s.allow_no_token, False),
}
# The odd forms a variable takes as written (free text); every other one is refused.
ACCEPTED = {
    ("APP_VERSION", "0x10"),
    ("APP_VERSION", "1_000"),
    ("APP_EXECUTOR_ID", "0x10"),
    ("APP_EXECUTOR_ID", "1_000"),
    ("APP_API_TOKEN", "+5"),
    ("APP_API_TOKEN", "0x10"),
    ("APP_API_TOKEN", "1_000"),
    ("APP_ALLOWED_HOSTS", "0x10"),  # a host name
}


def _started(env: dict[str, str]) -> Settings:
    """What `serve` checks before it touches a database: the environment, the publisher
    classes and the failpoint spec, the API's exposure."""
    settings = validate(Settings.from_env(env)).settings
    refuse_an_open_api(settings)
    return settings


def test_the_matrix_covers_every_variable_the_readme_documents() -> None:
    """The environment table of docs/reference/configuration.md (the README's, before the docs
    site) names exactly the variables this matrix tries."""
    page = (PROJECT_ROOT / "docs" / "reference" / "configuration.md").read_text()
    table = page.split("<!-- environment:start -->", 1)[1].split("<!-- environment:end -->", 1)[0]
    assert table.lstrip().startswith("| variable |"), "the environment table moved"
    documented = set(re.findall(r"`((?:APP|DBOS)_[A-Z_]+)`", table))
    assert documented == set(VARIABLES)


@pytest.mark.parametrize("form", ODD_FORMS, ids=str)
@pytest.mark.parametrize("variable", VARIABLES)
def test_an_odd_form_is_taken_as_documented_or_refused_in_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, form: str
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative publishers file is looked for here, and not found
    value = ODD_FORMS[form]
    env = {"APP_PUBLISHERS_FILE": str(publishers_file(tmp_path, "orders")), variable: value}
    read, default = VARIABLES[variable]
    if value == "":
        assert read(_started(env)) == (default() if callable(default) else default)
    elif (variable, value) in ACCEPTED:
        assert read(_started(env)) == value
    else:
        with pytest.raises(BadInputError) as refused:
            _started(env)
        message = str(refused.value)
        assert variable in message and "\n" not in message, message
        if variable in SECRET_VARIABLES:
            assert value.strip() not in message


@pytest.mark.parametrize(
    ("env", "attribute", "expected"),
    [
        ({"APP_LOG_LEVEL": "warning"}, "log_level", "WARNING"),
        ({"APP_FAILPOINT_SEED": "-7"}, "failpoint_seed", -7),
        ({"APP_FAILPOINTS": "  chunk.start=raise ; batch.start=crash  "}, "failpoints", None),
        ({"APP_HTTP_PORT": "off"}, "http_port", None),
        ({"APP_HTTP_HOST": "::1"}, "http_host", "::1"),
        ({"APP_HTTP_HOST": "localhost"}, "http_host", "localhost"),
        ({"APP_HTTP_HOST": ALL_INTERFACES, "APP_API_TOKEN": "s3cret-t0ken"}, "api_token", None),
        ({"APP_HTTP_HOST": ALL_INTERFACES, "APP_ALLOW_NO_TOKEN": "1"}, "allow_no_token", True),
        ({"APP_HTTP_HOST": ALL_INTERFACES, "APP_HTTP_PORT": "off"}, "http_host", ALL_INTERFACES),
        ({"APP_VERSION": "2.1.0+build-7"}, "application_version", "2.1.0+build-7"),
        ({"APP_HEARTBEAT_SEC": "0.5", "APP_LEASE_TTL_SEC": "3"}, "leases", None),
    ],
)
def test_documented_forms_are_accepted(
    tmp_path: Path, env: dict[str, str], attribute: str, expected: object
) -> None:
    env = {"APP_PUBLISHERS_FILE": str(publishers_file(tmp_path, "orders")), **env}
    settings = _started(env)
    if expected is not None:
        assert getattr(settings, attribute) == expected
    else:  # read back in its own terms
        assert (
            getattr(settings, attribute)
            == {
                "failpoints": "chunk.start=raise ; batch.start=crash",
                "http_port": None,
                "api_token": "s3cret-t0ken",
                "leases": LeaseSettings(heartbeat_sec=0.5, ttl_sec=3.0),
            }[attribute]
        )


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"APP_LOG_LEVEL": "\u0131nfo"}, "APP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
        ({"APP_FAILPOINTS": "chunk.start=crash@\uff13"}, "APP_FAILPOINTS must be printable ASCII"),
        ({"APP_HTTP_HOST": "[::1]"}, "APP_HTTP_HOST must be an IP address or a host name"),
        ({"APP_HTTP_HOST": "a..b"}, "APP_HTTP_HOST must be an IP address or a host name"),
        ({"APP_API_TOKEN": "two words"}, "APP_API_TOKEN must be printable ASCII without spaces"),
        ({"APP_ALLOW_NO_TOKEN": "yes"}, "APP_ALLOW_NO_TOKEN must be 1 or 0, not 'yes'"),
        ({"APP_VERSION": "v" * 65}, "APP_VERSION"),
        ({"APP_HTTP_PORT": "65536"}, "APP_HTTP_PORT must be 1-65535 or 'off', not '65536'"),
        ({"APP_HTTP_PORT": "OFF"}, "APP_HTTP_PORT must be an integer, not 'OFF'"),
    ],
)
def test_odd_forms_beyond_the_matrix_are_refused(
    tmp_path: Path, env: dict[str, str], problem: str
) -> None:
    env = {"APP_PUBLISHERS_FILE": str(publishers_file(tmp_path, "orders")), **env}
    with pytest.raises(BadInputError) as refused:
        _started(env)
    assert problem in str(refused.value)


@pytest.mark.parametrize("host", [ALL_INTERFACES, "::", "192.0.2.7", "publishers.internal"])
def test_binding_beyond_loopback_needs_a_token_or_the_opt_in(tmp_path: Path, host: str) -> None:
    env = {"APP_PUBLISHERS_FILE": str(publishers_file(tmp_path, "orders")), "APP_HTTP_HOST": host}
    with pytest.raises(ConfigError, match="beyond loopback without a token") as refused:
        _started(env)
    assert str(refused.value).startswith(f"APP_HTTP_HOST={host} ")
    assert _started({**env, "APP_API_TOKEN": "t0ken"}).api_token == "t0ken"
    assert _started({**env, "APP_ALLOW_NO_TOKEN": "1"}).allow_no_token is True


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_needs_no_token(tmp_path: Path, host: str) -> None:
    env = {"APP_PUBLISHERS_FILE": str(publishers_file(tmp_path, "orders")), "APP_HTTP_HOST": host}
    assert _started(env).api_token is None


# ---- the publishers file, whatever it is ------------------------------------------------


def test_a_publishers_file_over_one_mib_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = publishers_file(tmp_path, "orders")
    with path.open("a") as file:  # valid TOML all the way: only the size is wrong
        file.write("# padding\n" * (MAX_PUBLISHERS_FILE_BYTES // 10))
    assert path.stat().st_size > MAX_PUBLISHERS_FILE_BYTES
    with pytest.raises(ConfigError, match="is over the 1 MiB a publishers file may take"):
        load_declarations(path)
    path.write_bytes(path.read_bytes()[: MAX_PUBLISHERS_FILE_BYTES - 1])  # just under: fine
    assert [p.name for p in load_declarations(path)[0]] == ["orders"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (bytes(range(256)), "is not UTF-8 text (byte 0x80 at offset 128)"),
        (b'[[publishers]]\nname = "orders"\n\x00', "is not valid TOML"),
        (b"\xef\xbb\xbf" + b"\xff" * 10, "is not UTF-8 text (byte 0xff at offset 3)"),
    ],
)
def test_a_binary_publishers_file_is_one_line(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "publishers.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as refused:
        load_declarations(path)
    message = str(refused.value)
    assert problem in message and "\n" not in message and "APP_PUBLISHERS_FILE" in message


def test_a_publishers_file_that_is_no_regular_file_is_refused_without_reading_it(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_declarations(fifo)
    with pytest.raises(ConfigError, match="is a directory"):
        load_declarations(tmp_path)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_declarations(Path("/dev/zero"))  # endless: never read


# ---- database names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ['rel_inj" TEMPLATE "template0', 'one"quote', "spaced name", "ünïcödé", "x" * 63]
)
def test_any_database_name_postgres_can_hold_is_accepted(name: str) -> None:
    raw = sa.make_url("postgresql://u@h/x").set(database=name).render_as_string(False)
    assert DatabaseUrl.parse(raw, LABEL).sqlalchemy_url.database == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("x" * 64, "over 63 bytes"),
        ("é" * 32, "over 63 bytes"),  # 64 bytes in UTF-8
        ("a\nb", "control character"),
        ("a\x00b", "control character"),
    ],
)
def test_a_database_name_postgres_cannot_hold_is_refused(name: str, problem: str) -> None:
    raw = sa.make_url("postgresql://u:hunter2@h/x").set(database=name).render_as_string(False)
    with pytest.raises(ConfigError) as refused:
        DatabaseUrl.parse(raw, LABEL)
    message = str(refused.value)
    assert message.startswith(LABEL) and problem in message
    assert "\n" not in message and "hunter2" not in message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"dbos": "WARNING", "alembic": "WARNING", "uvicorn": "WARNING"}),
        ({"APP_LOG_LEVEL": "debug"}, {"dbos": "DEBUG", "alembic": "DEBUG", "uvicorn": "DEBUG"}),
        ({"APP_LOG_LEVEL": "ERROR"}, {"dbos": "ERROR", "alembic": "ERROR", "uvicorn": "ERROR"}),
        (
            {"APP_LOG_LEVELS": "dbos=info,dbos_publishers.fleet._workers=DEBUG"},
            {
                "dbos": "INFO",
                "alembic": "WARNING",
                "uvicorn": "WARNING",
                "dbos_publishers.fleet._workers": "DEBUG",
            },
        ),
    ],
)
def test_dbos_and_alembic_chatter_is_quiet_unless_asked_for(
    env: dict[str, str], expected: dict[str, str]
) -> None:
    assert logger_levels(env) == expected


@pytest.mark.parametrize("value", ["dbos", "dbos=LOUD", "dbos=INFO,", "=INFO", "db os=INFO"])
def test_a_bad_per_logger_level_is_one_line(value: str) -> None:
    with pytest.raises(BadInputError) as refused:
        logger_levels({"APP_LOG_LEVELS": value})
    assert str(refused.value).startswith("APP_LOG_LEVELS entry "), refused.value

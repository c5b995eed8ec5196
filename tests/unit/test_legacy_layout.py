"""Names the layout before `dbos_publishers` left in deployments still resolve: class paths in
publishers files (with a deprecation line) and exceptions pickled in DBOS's records."""

from __future__ import annotations

import inspect
import pickle
import sys
from collections.abc import Iterator

import pytest

from dbos_publishers import _legacy, _runtime
from dbos_publishers._config import ConfigError, PublisherDeclaration
from dbos_publishers._failpoints import FailpointError
from dbos_publishers.contrib.events import EventPublisher
from dbos_publishers.store._batch_records import BatchCancelledError


def _declared(class_path: str) -> PublisherDeclaration:
    return PublisherDeclaration(name="orders", class_path=class_path, chunk_size=10, options={})


class Recorder:
    """Stands in for the composition root's logger (structlog may cache the real one)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.lines.append((event, fields))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorded = Recorder()
    monkeypatch.setattr(_runtime, "log", recorded)
    return recorded


def test_an_old_class_path_resolves_with_one_deprecation_line(recorder: Recorder) -> None:
    cls = _runtime.load_class(_declared("app.publishers.events:EventPublisher"))
    assert cls is EventPublisher
    assert [(event, f["use"]) for event, f in recorder.lines] == [
        ("publisher_class_path_deprecated", "dbos_publishers.contrib.events:EventPublisher")
    ]


def test_a_new_class_path_logs_nothing(recorder: Recorder) -> None:
    assert _runtime.load_class(_declared("dbos_publishers.contrib.events:EventPublisher"))
    assert recorder.lines == []


@pytest.fixture
def without_aliases() -> Iterator[None]:
    """The process as if the aliases were never installed; restored afterwards."""
    finders = [f for f in sys.meta_path if isinstance(f, _legacy._OldModules)]
    for finder in finders:
        sys.meta_path.remove(finder)
    saved = {name: sys.modules.pop(name) for name in _legacy.PICKLED_MODULES if name in sys.modules}
    try:
        yield
    finally:
        for name in _legacy.PICKLED_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        sys.meta_path.extend(finders)


def _pickled_under_old_name(error: Exception, old_module: str) -> bytes:
    """What the old layout wrote: the error's class named by its module before the move."""
    cls = type(error)
    new_module = cls.__module__
    cls.__module__ = old_module
    try:
        _legacy.install_module_aliases()  # pickle checks the name resolves to the class
        return pickle.dumps(error)
    finally:
        cls.__module__ = new_module


@pytest.mark.parametrize(
    ("error", "old_module"),
    [
        (FailpointError("failpoint chunk.before_commit raised"), "app.failpoints"),
        (BatchCancelledError("batch b1 is cancelled"), "app.batch_records"),
    ],
)
def test_an_exception_pickled_by_the_old_layout_unpickles(
    without_aliases: None, error: Exception, old_module: str
) -> None:
    data = _pickled_under_old_name(error, old_module)
    for finder in [f for f in sys.meta_path if isinstance(f, _legacy._OldModules)]:
        sys.meta_path.remove(finder)
    sys.modules.pop(old_module, None)
    with pytest.raises(ModuleNotFoundError):  # the broken variant: no aliases
        pickle.loads(data)  # noqa: S301 - our own bytes
    _legacy.install_module_aliases()
    loaded = pickle.loads(data)  # noqa: S301 - our own bytes
    assert type(loaded) is type(error)
    assert str(loaded) == str(error)


def test_a_class_with_a_hook_of_the_old_seam_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class OldStyle(EventPublisher):
        def generate(self, chunk: object, position: int) -> str:
            return "never published"

    monkeypatch.setattr(sys.modules[__name__], "OldStyle", OldStyle, raising=False)
    with pytest.raises(ConfigError) as refused:
        _runtime.load_class(_declared(f"{__name__}:OldStyle"))
    assert str(refused.value) == (
        "publisher 'orders': OldStyle.generate is no longer a hook: override body(chunk, position)"
    )


async def coroutine_hook(self: object, *args: object) -> None:
    raise AssertionError("never run by load_class")


def _hooked(monkeypatch: pytest.MonkeyPatch, name: str, hook: str, function: object) -> str:
    """A publisher class with `hook` replaced, importable as this module's `name`."""
    hooked = type(name, (EventPublisher,), {hook: function})
    monkeypatch.setattr(sys.modules[__name__], name, hooked, raising=False)
    return f"{__name__}:{name}"


@pytest.mark.parametrize(
    "hook", ["bodies", "body", "write_chunk", "should_retry_delivery", "delivery_policy"]
)
def test_an_async_hook_the_framework_does_not_await_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, hook: str
) -> None:
    """An `async def bodies` would return a coroutine nobody awaits: every message 'published'
    with no body of its own. It is refused when the class loads, in one line."""
    function = property(coroutine_hook) if hook == "delivery_policy" else coroutine_hook
    with pytest.raises(ConfigError) as refused:
        _runtime.load_class(_declared(_hooked(monkeypatch, "AsyncHooked", hook, function)))
    assert str(refused.value) == (
        f"publisher 'orders': AsyncHooked.{hook} is async def, and the framework calls it "
        "without awaiting it: define it with def (only open, close, deliver may be async def)"
    )
    # The broken variant: the same class with a plain hook loads.
    plain = _hooked(monkeypatch, "PlainHooked", hook, getattr(EventPublisher, hook))
    assert _runtime.load_class(_declared(plain)).__name__ == "PlainHooked"


@pytest.mark.parametrize("hook", ["deliver", "open", "close"])
def test_an_awaited_hook_may_be_async(monkeypatch: pytest.MonkeyPatch, hook: str) -> None:
    """`open`, `close` and `deliver` are awaited on the process's event loop (the silent loss of
    an unawaited `deliver` is disproved against Redis in tests/inprocess/test_async_hooks.py)."""
    loaded = _runtime.load_class(_declared(_hooked(monkeypatch, "Awaited", hook, coroutine_hook)))
    assert inspect.iscoroutinefunction(getattr(loaded, hook))

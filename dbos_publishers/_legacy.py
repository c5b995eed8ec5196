"""What the layout before `dbos_publishers` left in deployments, resolved in the new one.

- Publishers files name classes by path: the old paths of the framework's own publishers resolve
  to their new place, with one deprecation line (`moved_class_path`).
- DBOS pickles the exceptions a step or workflow ended with; a record written before the move
  names the old module (`app.failpoints.FailpointError`). Those modules resolve to the new ones
  (`install_module_aliases`), after every real module: a service's own `app.errors` wins.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

MOVED_MODULES = {
    "app.publishers.events": "dbos_publishers.contrib.events",
    "app.publishers.jsonl": "dbos_publishers.contrib.jsonl",
    "app.publishers.webhook": "dbos_publishers.contrib.webhook",
}
# Hooks of the layout before, and what replaced them: a class still defining one would be
# skipped silently, so it is refused at start.
REMOVED_HOOKS = {
    "generate": "body(chunk, position)",
    "generate_chunk": "bodies(chunk)",
    "payload": "body(chunk, position)",
    "payloads": "bodies(chunk)",
    "commit_chunk": "write_chunk(entries) (the commit itself is the framework's)",
}
# Modules whose exceptions an old record may hold (step errors, workflow errors).
PICKLED_MODULES = {
    "app.errors": "dbos_publishers._errors",
    "app.failpoints": "dbos_publishers._failpoints",
    "app.batch_records": "dbos_publishers.store._batch_records",
}


def moved_class_path(class_path: str) -> str | None:
    """The new path of a class declared by its path before the move, or None if it did not
    move."""
    module, _, name = class_path.partition(":")
    new = MOVED_MODULES.get(module)
    return f"{new}:{name}" if new else None


def removed_hook(cls: type) -> str | None:
    """One line naming a hook of the old seam that `cls` defines and what replaced it."""
    for hook, replacement in REMOVED_HOOKS.items():
        if hasattr(cls, hook):
            return f"{cls.__name__}.{hook} is no longer a hook: override {replacement}"
    return None


class _OldModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name as the new module itself (one module object, never a copy)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PICKLED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(PICKLED_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Already executed under its new name."""


def install_module_aliases() -> None:
    """Once per process, last in the finder chain."""
    if not any(isinstance(finder, _OldModules) for finder in sys.meta_path):
        sys.meta_path.append(_OldModules())

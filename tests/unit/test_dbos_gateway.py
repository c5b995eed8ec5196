"""The DBOS gateway is the only module that touches DBOS's private names, and those names are
still where it expects them (this fails loudly when a DBOS upgrade moves them)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import get_args, get_type_hints

from dbos import DBOS, DBOSClient, _core, _datasource, _dbos, _sys_db, _utils

from dbos_publishers import _dbos_gateway as dbos_gateway
from tests.helpers import ROOT

GATEWAY = ROOT / "dbos_publishers" / "_dbos_gateway.py"


def _private_dbos_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [a.name for a in node.names]
            if node.module.startswith("dbos._") or (
                node.module == "dbos" and any(n.startswith("_") for n in names)
            ):
                found.append(f"{path.relative_to(ROOT)}: from {node.module} import {names}")
        elif isinstance(node, ast.Import):
            found += [
                f"{path.relative_to(ROOT)}: import {a.name}"
                for a in node.names
                if a.name.startswith("dbos._")
            ]
    return found


def test_no_module_but_the_gateway_imports_a_private_dbos_name() -> None:
    packages = ("dbos_publishers", "app", "lab", "migrations")
    sources = [path for package in packages for path in ROOT.glob(f"{package}/**/*.py")]
    offenders = [hit for path in sources if path != GATEWAY for hit in _private_dbos_imports(path)]
    assert offenders == []
    assert _private_dbos_imports(GATEWAY)  # the check sees the gateway's own private import


def test_the_registry_the_gateway_clears_is_where_it_expects() -> None:
    registry = _dbos._dbos_global_registry
    assert registry is not None
    assert isinstance(registry.instance_info_map, dict)


def test_the_datasource_types_match_dbos_own() -> None:
    assert set(get_args(dbos_gateway.IsolationLevel)) == set(get_args(_datasource.IsolationLevel))
    ours = get_type_hints(dbos_gateway.DatasourceOptions)
    theirs = get_type_hints(_datasource.DatasourceOptions)
    assert set(ours) == set(theirs)
    assert {k: set(get_args(v)) for k, v in ours.items()} == {
        k: set(get_args(v)) for k, v in theirs.items()
    }


def test_the_recovery_call_the_takeover_uses_still_takes_executor_ids() -> None:
    parameters = inspect.signature(DBOS._recover_pending_workflows).parameters
    assert list(parameters) == ["executor_ids"]


def test_the_system_database_names_the_version_move_uses_are_where_it_expects() -> None:
    """`move_to_version` writes through the client's own SystemDatabase, as DBOS's recovery does."""
    assert "self._sys_db = SystemDatabase.create(" in inspect.getsource(DBOSClient.__init__)
    table = _sys_db.SystemDatabase.tables.workflow_status
    used = {"status", "application_version", "application_name", "owner_xid", "queue_name"}
    assert used | {"started_at_epoch_ms", "updated_at"} <= set(table.c.keys())
    for name in ("_wf", "_name_filter", "_now_ms_sql"):
        assert callable(getattr(_sys_db.SystemDatabase, name)), name
    assert _utils.INTERNAL_QUEUE_NAME == "_dbos_internal_queue"


def test_the_batch_enqueue_the_fan_out_uses_is_where_it_expects() -> None:
    assert "workflow_id" in inspect.signature(_core.prepare_enqueued_workflow).parameters
    assert callable(_dbos._get_dbos_instance)
    assert "statuses" in inspect.signature(_sys_db.SystemDatabase.init_workflows).parameters
    # It sends init_workflows' rows through its own `_insert_rows` (as one executemany).
    source = inspect.getsource(_sys_db.SystemDatabase.init_workflows)
    assert source.count("self._insert_rows(") == 2 and "self.engine.begin()" in source
    insert_rows = inspect.signature(_sys_db.SystemDatabase._insert_rows).parameters
    assert list(insert_rows)[:4] == ["self", "conn", "build", "rows"]
    assert callable(_sys_db.SystemDatabase._key_conflict)


def test_the_columns_the_window_wait_reads_are_where_it_expects() -> None:
    columns = set(_sys_db.SystemDatabase.tables.workflow_status.c.keys())
    assert {"workflow_uuid", "status"} <= columns

"""Deploys while work is pending: version N dies mid-batch, version N+1 takes the work over.

- compatible: N+1 changes code under the same APP_VERSION; its restart finishes N's work.
- patched: N+1 changes the chunk workflow's steps behind `DBOS.patch`; every chunk in flight at
  the crash takes the path its recorded steps call for, and new chunks take the new path.
- new-version: N+1 runs another APP_VERSION; N's work is reported stranded (status, /workers,
  the stranded_work view) until `python -m app upgrade` moves it, which the lab SIGKILLs
  mid-move and runs again; N+1 then finishes the work, exactly once.
"""

from __future__ import annotations

import json
import signal
import time
from typing import TYPE_CHECKING, Any, assert_never

import httpx
import sqlalchemy as sa

from dbos_publishers._dbos_gateway import ACTIVE_STATUSES
from dbos_publishers.ops._fleet_view import RESOLVE
from dbos_publishers.store._database import short_lived_engine
from lab.publishers.versions import MEASURE_PATCH
from lab.scenarios.catalog import Batch, Fault
from lab.scenarios.harness import HarnessError, json_records
from lab.scenarios.lab import LAB_LEASES
from lab.scenarios.report import FaultRun

if TYPE_CHECKING:
    from lab.scenarios.lab import Lab

PATCH_MARKER = f"DBOS.patch-{MEASURE_PATCH}"  # how DBOS records a patch taken
REPORTED_WITHIN_SEC = 60.0  # the dead worker's lease (3 s in the lab) and a loaded machine
Steps = dict[str, dict[int, str]]  # workflow id -> step number -> step name


def run(lab: Lab) -> None:
    kind = lab.scenario.upgrade
    match kind:
        case "compatible":
            _compatible(lab)
        case "patched":
            _patched(lab)
        case "new-version":
            _new_version(lab)
        case None:
            raise HarnessError("not an upgrade scenario")
        case _:
            assert_never(kind)


# ---- compatible and patched: N+1 under the same APP_VERSION ---------------------------------


def _compatible(lab: Lab) -> None:
    lab.faulty_run(lab.scenario.faults[0])
    _declare_next(lab)
    lab.clean_run()
    written = [r for r in lab.harness.records() if r.get("event") == "chunk_written"]
    lab.report.deploy.append(
        f"N+1 {_next_class(lab)} resumed N's work; it logged {len(written)} chunk_written lines"
    )
    if not written:
        lab.report.violations.append("the restart did not run N+1's code (no chunk_written line)")


def _patched(lab: Lab) -> None:
    first, *later = lab.batches
    _publish(lab, [first])  # the others are new work, submitted once N+1 runs
    lab.submitted = True
    lab.faulty_run(lab.scenario.faults[0])
    before = _steps(lab, [first])
    in_flight = {
        wf.workflow_id
        for wf in lab.harness.workflows(first.batch_id)
        if wf.status in ACTIVE_STATUSES and wf.workflow_id in before
    }
    _declare_next(lab)
    lab.clean_run()  # the client's retry submits every batch: `later` is new work for N+1
    _check_paths(lab, before, in_flight, later)


def _check_paths(lab: Lab, before: Steps, in_flight: set[str], later: list[Batch]) -> None:
    """DBOS.patch's rule, per chunk: a chunk with a step recorded where the patch stands replays
    the old path; one without takes the new path; both paths must have been taken."""
    after = _steps(lab, lab.batches)
    new_way = {wf for wf, steps in after.items() if PATCH_MARKER in steps.values()}
    patch_at = min(
        (n for wf in new_way for n, s in after[wf].items() if s == PATCH_MARKER), default=0
    )
    violations = lab.report.violations
    if not patch_at:
        violations.append("no chunk workflow took N+1's new path")
        return
    old_way = {wf for wf in in_flight if max(before[wf], default=0) >= patch_at}
    wrong = (old_way & new_way) | (in_flight - old_way - new_way)
    violations += [f"{wf} took the other path than its recorded steps call for" for wf in wrong]
    new_chunks = {wf for wf in after if wf.startswith(tuple(f"batch-{b.batch_id}/" for b in later))}
    violations += [f"{wf}, new work, took the old path" for wf in sorted(new_chunks - new_way)]
    if not old_way:
        violations.append("no chunk in flight at the crash had passed the patch point")
    lab.report.deploy.append(
        f"{PATCH_MARKER} at step {patch_at}: of {len(in_flight)} chunks in flight at the crash, "
        f"{len(old_way)} finished the old way ({', '.join(sorted(old_way)) or '-'}), "
        f"{len(in_flight - old_way)} the new way; {len(new_chunks & new_way)} of "
        f"{len(new_chunks)} chunks submitted after the restart the new way"
    )


def _steps(lab: Lab, batches: list[Batch]) -> Steps:
    """The recorded steps of the batches' chunk workflows (every chunk enqueued, even stepless)."""
    chunks: Steps = {
        wf.workflow_id: {}
        for wf in lab.harness.workflows(*(b.batch_id for b in batches))
        if "/chunk-" in wf.workflow_id
    }
    for (workflow_id, number), step in lab.harness.steps(*(b.batch_id for b in batches)).items():
        if workflow_id in chunks:
            chunks[workflow_id][number] = step["function_name"]
    return chunks


# ---- new-version: N+1 under another APP_VERSION, and `python -m app upgrade` -----------------


def _new_version(lab: Lab) -> None:
    lab.harness.extra_env.update(LAB_LEASES)  # N's lease lapses in seconds, not the default 10
    lab.faulty_run(lab.scenario.faults[0])
    env = lab.scenario.restart_env
    target = env["APP_VERSION"]
    old = {
        wf.workflow_id: str(wf.app_version)
        for wf in lab.harness.active_workflow_statuses()
        if wf.app_version not in (None, target)
    }
    base_url = lab.harness.enable_http()
    lab.progress.update(f"{lab.scenario.name}: N+1 runs APP_VERSION={target}")
    lab.harness.start("", env=env)
    _check_reported_stranded(lab, base_url, old)
    upgraded_at = time.time()
    first = _upgrade_crashing(lab, lab.scenario.faults[1], old, target)
    _upgrade_again(lab, old, first)
    lab.wait_done()
    lab.collect(upgraded_at)  # "the restart" of the report is the first `upgrade` here
    if lab.report.restart_seconds is not None:
        lab.report.deploy.append(
            f"first resumed step {lab.report.restart_seconds:.2f} s after `upgrade` started"
        )
    if _reported(lab, base_url)["status"]:
        lab.report.violations.append("status still reports stranded work after the upgrade")
    lab.harness.stop()


def _check_reported_stranded(lab: Lab, base_url: str, old: dict[str, str]) -> None:
    """status --json, GET /workers and (Postgres) the stranded_work view each list N's work as
    stranded, all of it, with `python -m app upgrade` to resolve it."""
    deadline = time.monotonic() + REPORTED_WITHIN_SEC
    seen = _reported(lab, base_url)
    while not _all_reported(seen, old) and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = _reported(lab, base_url)
    for where, listed in seen.items():
        count = sum(s["workflows"] for s in listed)
        hints = {s["resolve"] for s in listed}
        if count != len(old) or hints != {RESOLVE}:
            lab.report.violations.append(
                f"{where} reported {count} of {len(old)} workflows stranded, resolved by {hints}"
            )
    lab.report.deploy.append(
        f"stranded under version(s) {', '.join(sorted(set(old.values())))}: {len(old)} workflows, "
        f"reported by {', '.join(seen)} with `{RESOLVE}`"
    )


def _all_reported(seen: dict[str, list[dict[str, Any]]], old: dict[str, str]) -> bool:
    return all(sum(s["workflows"] for s in listed) == len(old) for listed in seen.values())


def _reported(lab: Lab, base_url: str) -> dict[str, list[dict[str, Any]]]:
    """What each of status, /workers and the view calls stranded, as (workflows, resolve)."""
    done = lab.harness.cli("status", "--json", **lab.scenario.restart_env)
    if done.returncode != 0:
        raise HarnessError(f"status exited {done.returncode}: {done.stderr.strip()}")
    seen = {"status": json.loads(done.stdout)["stranded"]}
    seen["GET /workers"] = httpx.get(f"{base_url}/workers", timeout=30).json()["stranded"]
    if lab.harness.databases.backend == "postgres":  # the view joins DBOS's tables
        with short_lived_engine(lab.harness.app_db) as engine, engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT resolve FROM stranded_work")).all()
        seen["the stranded_work view"] = [{"workflows": 1, "resolve": r.resolve} for r in rows]
    return seen


def _upgrade_crashing(lab: Lab, fault: Fault, old: dict[str, str], target: str) -> set[str]:
    """`upgrade` with its failpoint: it must die after moving some of the work, not all."""
    lab.progress.update(f"{lab.scenario.name}: upgrade, to die mid-move")
    done = lab.harness.cli("upgrade", APP_FAILPOINTS=fault.failpoints, **lab.scenario.restart_env)
    moved = {
        wf.workflow_id
        for wf in lab.harness.workflow_statuses(list(old))
        if wf.app_version == target
    }
    killed = done.returncode == -signal.SIGKILL
    ended = "SIGKILL by the failpoint" if killed else f"exit {done.returncode}"
    lab.report.fault_runs.append(
        FaultRun(
            run=len(lab.report.fault_runs) + 1,
            failpoints=f"{fault.failpoints} (python -m app upgrade)",
            ended=f"{ended} after moving {len(moved)} of {len(old)} workflows",
            ledger_rows=lab.ledger_rows(),
            fired=_fired(done.stderr),
        )
    )
    if not killed or not 0 < len(moved) < len(old):
        lab.report.violations.append(f"`upgrade` was to die mid-move; it ended {ended}")
    return moved


def _upgrade_again(lab: Lab, old: dict[str, str], first: set[str]) -> None:
    """Run again, it moves exactly what the crashed run left; a third run moves nothing."""
    second, third = _moved_by_upgrade(lab), _moved_by_upgrade(lab)
    violations = lab.report.violations
    violations += [f"{wf} was moved twice" for wf in sorted(first & second)]
    violations += [f"{wf} was never moved" for wf in sorted(set(old) - first - second)]
    if third:
        violations.append(f"a third `upgrade` moved {len(third)} workflows again")
    lab.report.deploy.append(
        f"`upgrade` moved {len(first)} workflows and died; run again it moved the other "
        f"{len(second)}; a third run moved {len(third)}"
    )


def _moved_by_upgrade(lab: Lab) -> set[str]:
    done = lab.harness.cli("upgrade", "--json", **lab.scenario.restart_env)
    if done.returncode != 0:
        raise HarnessError(f"upgrade exited {done.returncode}: {done.stderr.strip()}")
    return {moved["workflow_id"] for moved in json.loads(done.stdout)["moved"]}


# ---- shared -----------------------------------------------------------------------------------


def _declare_next(lab: Lab) -> None:
    """N+1's publishers file: the same names and tuning, N+1's classes."""
    lab.harness.declare(
        lab.scenario.restart_publishers,
        chunk_size=lab.scenario.chunk_size,
        chunk_concurrency=lab.scenario.chunk_concurrency,
        name="publishers-next.toml",
    )


def _next_class(lab: Lab) -> str:
    return ", ".join(sorted(set(lab.scenario.restart_publishers.values())))


def _publish(lab: Lab, batches: list[Batch]) -> None:
    for b in batches:
        lab.harness.publish(b.publisher, b.count, b.batch_id, "--topic", b.topic)


def _fired(output: str) -> list[dict[str, Any]]:
    return [
        {"process": "upgrade", **{k: r.get(k) for k in ("failpoint", "action")}}
        for r in json_records(output)
        if r.get("event") == "failpoint_fired"
    ]

"""A batch's lifecycle with the service running throughout: cancel, resume and retry.

- cancel: `python -m app cancel` lands mid-batch and is SIGKILLed after its state committed,
  before DBOS heard of it. From then on nothing of the batch may be published, although its chunk
  workflows still run; cancel run again stops every one of them; still nothing is published;
  `resume` then completes the batch, exactly (the verdict every scenario gets).
- retry: a chunk fails for good; `retry` (the CLI) enqueues it again and a second retry (the
  API) enqueues nothing; the chunk is published once and the merged summary reports 0 failed.
- cancel-dbos-only (broken): `dbos workflow cancel batch-X`, the advice before `cancel` existed:
  the batch's queued chunks publish on, which the same observation catches.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any, assert_never

import httpx

from dbos_publishers import _ids as ids
from dbos_publishers._ids import batch_workflow_id
from lab.scenarios.catalog import PACED, Batch
from lab.scenarios.harness import VENV_BIN, HarnessError, json_records
from lab.scenarios.report import FaultRun

if TYPE_CHECKING:
    from lab.scenarios.lab import Lab

OBSERVE_SEC = 4.0  # the service keeps running this long, paced chunks trying to commit
WAIT_SEC = 120.0
STILL_RUNNING = ("PENDING", "ENQUEUED")


def run(lab: Lab) -> None:
    kind = lab.scenario.lifecycle
    match kind:
        case "cancel":
            _cancel(lab)
        case "retry":
            _retry(lab)
        case "cancel-dbos-only":
            _cancel_dbos_only(lab)
        case None:
            raise HarnessError("not a lifecycle scenario")
        case _:
            assert_never(kind)


# ---- cancel, crashed and run again, then resume ---------------------------------------------


def _cancel(lab: Lab) -> None:
    batch = _start_mid_batch(lab)
    at_cancel = _crashing_cancel(lab, batch)
    held = _observe(lab, batch, at_cancel, "after the cancel committed (DBOS not told yet)")
    again = _cli_json(lab, "cancel", batch.batch_id)
    _check_stopped(lab, batch)
    _observe(lab, batch, at_cancel, "after cancel ran again")
    lab.report.lifecycle.append(
        f"cancel SIGKILLed at {at_cancel} of {batch.count} messages, after its state committed: "
        f"{held} chunk commits rolled back in {OBSERVE_SEC:g} s, none published; run again it "
        f"cancelled {len(again['workflows'])} workflows; {OBSERVE_SEC:g} s later still "
        f"{lab.ledger_rows()}"
    )
    resumed_at = time.time()
    resumed = _cli_json(lab, "resume", batch.batch_id)
    lab.report.lifecycle.append(f"resume put {len(resumed['workflows'])} workflows back")
    lab.wait_done()
    lab.collect(resumed_at)  # "the restart" of the report is the resume here
    lab.harness.stop()


def _start_mid_batch(lab: Lab) -> Batch:
    """Submit, start the service with paced chunks, return once the first chunk committed."""
    (batch,) = lab.batches
    lab.submit()
    lab.harness.start(PACED)
    _until(lambda: lab.ledger_rows() >= lab.scenario.chunk_size, "the first chunk committed")
    return batch


def _crashing_cancel(lab: Lab, batch: Batch) -> int:
    """`cancel` with its failpoint: it must die after the state committed, before DBOS; returns
    the batch's ledger rows then (every chunk transaction that could commit has)."""
    fault = lab.scenario.faults[0]
    done = lab.harness.cli("cancel", batch.batch_id, APP_FAILPOINTS=fault.failpoints)
    at_cancel = lab.ledger_rows()
    killed = done.returncode == -signal.SIGKILL
    ended = "SIGKILL by the failpoint" if killed else f"exit {done.returncode}"
    lab.report.fault_runs.append(
        FaultRun(
            run=len(lab.report.fault_runs) + 1,
            failpoints=f"{fault.failpoints} (python -m app cancel)",
            ended=ended,
            ledger_rows=at_cancel,
            fired=_fired(done.stderr, "cancel"),
        )
    )
    if not killed:
        lab.report.violations.append(f"`cancel` was to die after its state; it ended {ended}")
    if at_cancel >= batch.count:
        lab.report.violations.append("the batch had finished before the cancel: nothing tested")
    return at_cancel


def _observe(lab: Lab, batch: Batch, at_cancel: int, when: str) -> int:
    """Keep the service running a while: the ledger must not move. Returns how many chunk
    commits rolled back on the cancelled state meanwhile (`chunk_held`)."""
    held_before = _held(lab)
    deadline = time.monotonic() + OBSERVE_SEC
    rows = lab.ledger_rows()
    while rows == at_cancel and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = lab.ledger_rows()
    if rows != at_cancel:
        lab.report.violations.append(
            f"batch {batch.batch_id}: {rows - at_cancel} messages published {when}"
        )
    return _held(lab) - held_before


def _held(lab: Lab) -> int:
    return sum(1 for r in lab.harness.records() if r.get("event") == "chunk_held")


def _check_stopped(lab: Lab, batch: Batch) -> None:
    left = [
        f"{wf.workflow_id} {wf.status}"
        for wf in lab.harness.workflows(batch.batch_id)
        if wf.status in STILL_RUNNING
    ]
    if left:
        lab.report.violations.append(f"cancel left {len(left)} workflows running: {left[:3]}")


# ---- retry ----------------------------------------------------------------------------------


def _retry(lab: Lab) -> None:
    (batch,) = lab.batches
    fault = lab.scenario.faults[0]
    base_url = lab.harness.enable_http()
    lab.submit()
    lab.harness.start(fault.failpoints)
    lab.wait_done()
    _, summary = lab.harness.batch_outcome(batch.batch_id)
    failed = summary["failed"] if summary else None
    lab.report.fault_runs.append(
        FaultRun(
            run=1,
            failpoints=fault.failpoints,
            ended=f"settled: the batch reported {failed} messages failed",
            ledger_rows=lab.ledger_rows(),
            fired=_fired("\n".join(json.dumps(r) for r in lab.harness.records()), "service"),
        )
    )
    if not failed:
        lab.report.violations.append("no chunk failed: retry had nothing to do")
        return
    retried_at = time.time()
    first = _cli_json(lab, "retry", batch.batch_id)["workflows"]
    second = _post(base_url, f"/batches/{batch.batch_id}/retry")["workflows"]
    _check_retries(lab, batch, first, second)
    lab.wait_done()
    merged = httpx.get(f"{base_url}/batches/{batch.batch_id}", timeout=30).json()["summary"]
    lab.report.lifecycle.append(
        f"{failed} messages failed; `retry` enqueued {first}, the API's retry {second or 'none'}; "
        f"GET /batches/{batch.batch_id}: published {merged['published']}, failed "
        f"{merged['failed']}"
    )
    if merged["failed"] or merged["published"] != batch.count:
        lab.report.violations.append(f"the merged summary reports {merged['failed']} failed")
    lab.collect(retried_at)
    lab.harness.stop()


def _check_retries(lab: Lab, batch: Batch, first: list[str], second: list[str]) -> None:
    retries = [wf.workflow_id for wf in lab.harness.workflows(batch.batch_id)]
    retries = [wf for wf in retries if ids.is_retry(wf)]
    if not first or second or sorted(retries) != sorted(first):
        lab.report.violations.append(
            f"retry twice enqueued {first} then {second}; retry workflows: {retries}"
        )


def _post(base_url: str, path: str) -> dict[str, Any]:
    response = httpx.post(f"{base_url}{path}", timeout=30)
    if response.status_code != httpx.codes.ACCEPTED:
        raise HarnessError(f"POST {path}: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


# ---- broken: DBOS's cancel alone --------------------------------------------------------------


def _cancel_dbos_only(lab: Lab) -> None:
    batch = _start_mid_batch(lab)
    done = _dbos_cancel(lab, batch)
    at_cancel = lab.ledger_rows()
    lab.report.lifecycle.append(f"`dbos workflow cancel` exited {done} at {at_cancel} messages")
    _observe(lab, batch, at_cancel, "after the cancel")
    _until(lambda: not lab.active(), "the chunks left to run", fail=False)
    lab.collect(time.time())
    lab.harness.stop()


def _dbos_cancel(lab: Lab, batch: Batch) -> int:
    done = subprocess.run(
        [
            *(str(VENV_BIN / "dbos"), "workflow", "cancel", batch_workflow_id(batch.batch_id)),
            *("-s", lab.harness.databases.system_url),
        ],
        cwd=lab.harness.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode


# ---- shared -----------------------------------------------------------------------------------


def _cli_json(lab: Lab, action: str, batch_id: str) -> dict[str, Any]:
    done = lab.harness.cli(action, batch_id, "--json")
    if done.returncode != 0:
        raise HarnessError(f"{action} exited {done.returncode}: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _until(condition: Any, what: str, *, fail: bool = True) -> None:
    deadline = time.monotonic() + WAIT_SEC
    while not condition():
        if time.monotonic() > deadline:
            if fail:
                raise HarnessError(f"never happened: {what}")
            return
        time.sleep(0.05)


def _fired(output: str, process: str) -> list[dict[str, Any]]:
    return [
        {"process": process, **{k: r.get(k) for k in ("failpoint", "action", "workflow_id")}}
        for r in json_records(output)
        if r.get("event") == "failpoint_fired" and r.get("action") != "delay"
    ]

"""Run one scenario: the real service in a subprocess with a fault injected, a restart without it,
then the invariants: nothing lost, nothing duplicated, nothing stranded, counters exact, no step
that had committed ran again."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from dbos_publishers._errors import UnreachableDatabaseError
from lab.scenarios import fleet_chaos, infra, lifecycles, netns, stuck, takeover, upgrades
from lab.scenarios.catalog import Scenario
from lab.scenarios.cluster import Cluster, own_cluster
from lab.scenarios.harness import Databases, HarnessError, ServiceHarness
from lab.scenarios.lab import Lab, RunOptions
from lab.scenarios.progress import Progress
from lab.scenarios.receiver import Receiver
from lab.scenarios.report import ScenarioReport
from lab.scratch import scratch_databases


def run(scenario: Scenario, options: RunOptions, progress: Progress) -> ScenarioReport:
    started = time.monotonic()
    with (
        _cluster(scenario) as (cluster, namespace),
        scratch_databases(
            options.backend, cluster.url if cluster else options.postgres_url, "scenario"
        ) as (system, app),
        tempfile.TemporaryDirectory(prefix="scenario-") as workdir,
        _receiver(scenario) as receiver,
    ):
        databases = Databases(options.backend, system.raw, app.raw)
        harness = ServiceHarness(databases=databases, workdir=Path(workdir))
        lab = Lab(scenario, options, harness, receiver, progress, cluster=cluster, netns=namespace)
        try:
            report = _run_kind(lab)
        except (HarnessError, UnreachableDatabaseError) as exc:  # the lab could not go on
            report = lab.report
            report.violations.append(f"the lab stopped: {str(exc).splitlines()[0]}")
        except Exception as exc:  # a lab bug: reported with its cause, never a bare traceback
            report = lab.report
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            report.violations.append(f"the lab failed: {type(exc).__name__}: {cause}")
        finally:
            for worker in lab.crew:
                worker.kill()
            progress.clear()
            lab.outages.recovered()  # an outage still on at the end is reported too
            lab.report.infrastructure = lab.outages.events
    report.total_seconds = round(time.monotonic() - started, 2)
    return report


@contextlib.contextmanager
def _cluster(scenario: Scenario) -> Iterator[tuple[Cluster | None, netns.Namespace | None]]:
    """pg/* scenarios stop and restart Postgres: on a cluster of the lab's own, never a shared
    server (--postgres-url is for the others). fleet/partition cuts a worker off from Postgres:
    its cluster also listens on the host's end of the worker's network namespace."""
    if scenario.stuck == "partition":
        with netns.namespace() as ns, own_cluster(ns.host_ip, ns.ns_ip) as cluster:
            yield cluster, ns
        return
    if scenario.infra is None:
        yield None, None
        return
    with own_cluster() as cluster:
        yield cluster, None


@contextlib.contextmanager
def _receiver(scenario: Scenario) -> Iterator[Receiver | None]:
    if not scenario.receiver:
        yield None
        return
    with Receiver() as receiver:
        yield receiver


def _run_kind(lab: Lab) -> ScenarioReport:
    """Multi-worker, Postgres, upgrade and lifecycle scenarios run as their kind's module says;
    the rest are fault runs and a restart."""
    if lab.scenario.stuck is not None:
        stuck.run(lab)
    elif lab.scenario.takeover == "mixed":
        fleet_chaos.run(lab)
    elif lab.report.workers > 1:
        takeover.run(lab)
    elif lab.scenario.infra is not None:
        infra.run(lab)
    elif lab.scenario.upgrade is not None:
        upgrades.run(lab)
    elif lab.scenario.lifecycle is not None:
        lifecycles.run(lab)
    else:
        lab.run_faults()
    return lab.report

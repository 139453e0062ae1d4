"""The Ray engine (``pip install .[ray]``): each task becomes a Ray task with the resources it declares, the
dependencies a task graph, and the results go back to the driver, which stores them exactly as the local engine
does (atomic JSON per unit), so a run started on one engine can be finished on the other.

* resources: a task's ``resources`` (``num_cpus``, ``num_gpus``: a fraction of a GPU for a fine-tuning group, a
  whole GPU for pretraining) become the Ray task's; on a cluster without GPUs ``num_gpus`` is dropped and the
  task runs on CPUs; ``num_cpus`` is capped at the CPUs of the largest node (the task keeps its thread count);
* dependencies: the ObjectRef of each dependency's status is passed as an argument, so Ray starts a task only
  when the tasks it waits for have finished; a task whose dependency did not succeed returns *blocked*;
* threads: a task runs with as many torch intra-op threads as CPUs it declares and reserves
  (:attr:`helpers.stages.base.Task.threads`), or with ``env.threads`` (``--threads``) when set, exactly as on the
  local engine: CPU results depend on the count, so both engines give the same tables (the count is recorded per
  unit, ``unit_threads``);
* retries: ``max_retries`` re-runs a task whose worker died (a lost node, an OOM kill); an exception raised by
  the task itself is not retried but sent back as a *failed* outcome with its traceback;
* storage: workers write only their work folders and checkpoints (``<results>/<stage>/work/<key>/``,
  ``<results>/sources/``), so the results folder must be shared by the driver and every worker (NFS, Lustre,
  a cloud file store mounted at the same path). Without a shared folder: run the pretraining stage on one
  machine, copy ``<results>/sources/`` (and ``segmentation_sources/``) to every worker at the same path, then
  run the other stages (fine-tuning and scoring workers write only their own work folders, and their results
  come back to the driver).

The project must be importable on every node at the same version (``pip install -e .`` from a shared
checkout, or a container image).
"""
from __future__ import annotations

import dataclasses
import time

from ..stages.base import Env, Task
from .common import BLOCKED, FAILED, OK, Outcome, Report, blocked_reason, execute, finish_task, prepare


def _remote_body(task: Task, env: Env, *dep_statuses):
    """What a Ray worker runs: the task, unless a dependency did not succeed."""
    bad = [s for s in dep_statuses if s != OK]
    if bad:
        return BLOCKED, Outcome(task.id, BLOCKED, reason=f"a dependency did not finish ({bad[0]})")
    # execute pins the task's own thread count: a reused worker keeps the OMP_NUM_THREADS of the task it was
    # started for, and CPU results depend on the thread count (helpers.threads)
    outcome = execute(task, env, catch=True)
    return outcome.status, outcome


def _options(task: Task, has_gpus: bool, max_retries: int, node_cpus: float | None = None) -> dict:
    """The Ray options of ``task``: the CPUs it declares (at most ``node_cpus``, the CPUs of the largest node, so
    that a task is never unschedulable; it still runs with its own thread count), its GPU fraction where the
    cluster has GPUs."""
    res = task.resources or {}
    cpus = float(res.get("num_cpus", 1))
    if node_cpus:
        cpus = min(cpus, float(node_cpus))
    opts = {"num_cpus": cpus, "max_retries": int(max_retries), "retry_exceptions": False, "num_returns": 2}
    if has_gpus and res.get("num_gpus"):
        opts["num_gpus"] = float(res["num_gpus"])
    return opts


def run(tasks: list[Task], env: Env, external: dict | None = None, keep_going: bool = False,
        report: Report | None = None, address: str | None = None, num_cpus: int | None = None,
        num_gpus: int | None = None, max_retries: int = 3, init_kwargs: dict | None = None) -> Report:
    """Run the pending configs of ``tasks`` on a Ray cluster: the one at ``address`` (``"auto"``: the cluster
    this machine belongs to), the one already initialised in this process, or a local one started here with
    ``num_cpus``/``num_gpus`` (and shut down at the end). Failures are recorded and their dependants blocked;
    with ``keep_going=False`` a :class:`RuntimeError` is raised at the end when any task failed."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - CI installs it
        raise ImportError("the Ray engine needs ray: pip install '.[ray]'") from exc
    from tqdm.auto import tqdm

    report = report or Report("ray")
    start = time.perf_counter()
    todo, finished, outside = prepare(tasks, env, external or {}, report)
    status = {tid: OK for tid in finished}
    started_here = False
    if todo and not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": True, **(init_kwargs or {})}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)
        started_here = True
    bars = {}
    if env.progress:
        for name, c in report.counts.items():
            bars[name] = tqdm(total=c.units, initial=c.done_before, desc=f"{name} (ray)", unit="unit")
    worker_env = dataclasses.replace(env, progress=False, cache={})
    try:
        if todo:
            has_gpus = ray.cluster_resources().get("GPU", 0) > 0
            node_cpus = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=None)
            remote = ray.remote(_remote_body)
            status_refs, waiting, by_ref = {}, [], {}
            for task in todo:
                known_bad = [d for d in task.deps if d in status and status[d] != OK]
                why = blocked_reason(Task(task.stage, task.id, task.configs,
                                          tuple(d for d in task.deps if d not in status_refs)), status, outside)
                if known_bad or why is not None:
                    outcome = Outcome(task.id, BLOCKED, reason=why or f"{known_bad[0]} did not finish")
                    finish_task(task, outcome, env, status, report, bars)
                    continue
                deps = [status_refs[d] for d in task.deps if d in status_refs]
                status_ref, outcome_ref = remote.options(**_options(task, has_gpus, max_retries, node_cpus)).remote(
                    task, worker_env, *deps)
                status_refs[task.id] = status_ref
                waiting.append(outcome_ref)
                by_ref[outcome_ref] = task
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                task = by_ref.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except Exception as exc:  # the worker died beyond its retries, or a dependency's did
                    outcome = Outcome(task.id, FAILED, reason=f"{type(exc).__name__}: {str(exc)[-3000:]}")
                finish_task(task, outcome, env, status, report, bars)
    finally:
        for bar in bars.values():
            bar.close()
        if started_here:
            ray.shutdown()
    report.seconds += time.perf_counter() - start
    if report.failed and not keep_going:
        raise RuntimeError("tasks failed on the Ray engine:\n" + report.summary())
    return report


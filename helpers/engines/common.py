"""What every engine shares: the order of a task graph, what a worker does with a task (:func:`execute`), what
the driver does with its outcome (:func:`store_outcome`), and the report of a run."""
from __future__ import annotations

import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

from ..models import SourceUnavailable
from ..stages import stage_module
from ..stages.base import Env, Task, clear_problem, pending_configs, record_problem
from ..threads import task_threads

OK, UNAVAILABLE, BLOCKED, FAILED = "ok", "unavailable", "blocked", "failed"


def module_for(task: Task):
    """The stage module that owns ``task`` (from the registry of :mod:`helpers.stages`)."""
    return stage_module(task.module)


def topological(tasks: list[Task]) -> list[Task]:
    """``tasks`` ordered so that each comes after the tasks it depends on (stable otherwise); a cycle is an
    error. Dependencies outside ``tasks`` are ignored here."""
    by_id = {t.id: t for t in tasks}
    if len(by_id) != len(tasks):
        dup = [i for i, n in Counter(t.id for t in tasks).items() if n > 1]
        raise ValueError(f"task ids must be unique; repeated: {sorted(dup)[:5]}")
    order, state = [], {}

    def visit(t: Task, path: tuple):
        s = state.get(t.id)
        if s == "done":
            return
        if s == "active":
            raise ValueError(f"dependency cycle: {' -> '.join(path + (t.id,))}")
        state[t.id] = "active"
        for d in t.deps:
            if d in by_id:
                visit(by_id[d], path + (t.id,))
        state[t.id] = "done"
        order.append(t)

    for t in tasks:
        visit(t, ())
    return order


@dataclass
class Outcome:
    """What a worker sends back: per config its rows (status ok), or why there are none."""

    task_id: str
    status: str
    rows: list | None = None
    seconds: float = 0.0
    reason: str = ""
    threads: int | None = None  # torch intra-op threads the task ran with (CPU results depend on it)


def execute(task: Task, env: Env, catch: bool = False) -> Outcome:
    """Run a task's (pending) configs in this process with the torch threads of the task
    (:meth:`Env.task_threads <helpers.stages.base.Env.task_threads>`: ``env.threads`` when set, else the CPUs
    the task declares), whichever engine calls, so the same task gives the same rows on every engine. A source
    that cannot be had here gives an *unavailable* outcome; any other exception propagates, or with ``catch``
    becomes a *failed* outcome with the traceback."""
    module = module_for(task)
    start = time.perf_counter()
    with task_threads(env.task_threads(task)) as n:
        try:
            rows = module.run_task(task, env)
        except SourceUnavailable as exc:
            return Outcome(task.id, UNAVAILABLE, reason=f"{exc.reason}", seconds=time.perf_counter() - start,
                           threads=n)
        except Exception:
            if not catch:
                raise
            return Outcome(task.id, FAILED, reason=traceback.format_exc(limit=8)[-4000:],
                           seconds=time.perf_counter() - start, threads=n)
    if len(rows) != len(task.configs):
        raise RuntimeError(f"{task.id}: run_task returned {len(rows)} results for {len(task.configs)} configs")
    return Outcome(task.id, OK, list(rows), time.perf_counter() - start, threads=n)


def store_outcome(task: Task, outcome: Outcome, env: Env) -> None:
    """On the driver: store each config's rows atomically (as :meth:`helpers.runner.Stage.run` does), or record
    why the task has none."""
    if outcome.status == OK:
        stage = env.storage(task.stage)
        per = outcome.seconds / max(1, len(task.configs))
        for config, rows in zip(task.configs, outcome.rows):
            stage.store(config, rows, per, threads=outcome.threads)
        clear_problem(env, task)
    else:
        record_problem(env, task, outcome.status, outcome.reason)


@dataclass
class StageCount:
    units: int = 0
    done_before: int = 0
    computed: int = 0
    unavailable: int = 0
    blocked: int = 0
    failed: int = 0
    seconds: float = 0.0


@dataclass
class Report:
    """Per stage module: units planned, already done, computed now, and without a result (by cause)."""

    engine: str
    counts: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)   # (task id, status, reason)
    tables: dict = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, module: str) -> StageCount:
        return self.counts.setdefault(module, StageCount())

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.counts.values())

    def summary(self) -> str:
        lines = [f"{'stage':<16}{'units':>9}{'done':>9}{'computed':>10}{'unavail.':>10}{'blocked':>9}"
                 f"{'failed':>8}{'seconds':>10}"]
        for name, c in self.counts.items():
            lines.append(f"{name:<16}{c.units:>9}{c.done_before:>9}{c.computed:>10}{c.unavailable:>10}"
                         f"{c.blocked:>9}{c.failed:>8}{c.seconds:>10.1f}")
        lines.append(f"engine {self.engine}, {self.seconds:.1f} s in all")
        for tid, status, reason in self.problems[:20]:
            first = reason.strip().splitlines()[-1] if reason.strip() else ""
            lines.append(f"  {status}: {tid}: {first[:200]}")
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more (see <results>/<stage>/problems/)")
        return "\n".join(lines)


def prepare(tasks: list[Task], env: Env, external: dict, report: Report):
    """The tasks to run, each narrowed to its pending configs, in dependency order; counts what is done."""
    run, finished = [], set()
    for task in topological(tasks):
        module = module_for(task)
        pending = pending_configs(module, task, env)
        c = report.count(task.module)
        c.units += len(task.configs)
        c.done_before += len(task.configs) - len(pending)
        if pending:
            run.append(Task(task.stage, task.id, tuple(pending), task.deps, task.resources, task.estimate_s))
        else:
            finished.add(task.id)
    outside, running = {}, {t.id for t in run}
    for task in run:
        for d in task.deps:
            if d in outside or d in running or d in finished:
                continue
            dep = external.get(d)
            outside[d] = dep is not None and not pending_configs(module_for(dep), dep, env)
    return run, finished, outside


def blocked_reason(task: Task, status: dict, outside: dict) -> str | None:
    """Why ``task`` cannot run: a dependency that did not finish (in this run or before it)."""
    for d in task.deps:
        if d in status:
            if status[d] != OK:
                return f"{d} did not finish ({status[d]})"
        elif not outside.get(d, False):
            return (f"{d} is not done: run its stage first (`python -m helpers.run {d.split(':', 1)[0]} "
                    "--profile <profile>`)")
    return None


def finish_task(task: Task, outcome: Outcome, env: Env, status: dict, report: "Report", bars: dict) -> None:
    """Store a task's outcome (its units, or why it has none) and count it in the report and progress bars."""
    store_outcome(task, outcome, env)
    status[task.id] = outcome.status
    c = report.count(task.module)
    c.seconds += outcome.seconds
    if outcome.status == OK:
        c.computed += len(task.configs)
    else:
        setattr(c, outcome.status, getattr(c, outcome.status) + len(task.configs))
        report.problems.append((task.id, outcome.status, outcome.reason))
    if task.module in bars:
        bars[task.module].update(len(task.configs))

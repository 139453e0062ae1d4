"""The local engine: every task in this process, in dependency order, with tqdm progress per stage; finished
units are skipped (resume), each finished task's units are stored atomically as soon as it ends. Each task runs
with its own torch thread count (:attr:`helpers.stages.base.Task.threads`, or ``env.threads`` when set), as on
the Ray engine, and torch's setting is restored after it."""
from __future__ import annotations

import time

from ..stages.base import Env, Task
from .common import BLOCKED, FAILED, OK, Outcome, Report, blocked_reason, execute, finish_task, prepare


def run(tasks: list[Task], env: Env, external: dict | None = None, keep_going: bool = False,
        report: Report | None = None) -> Report:
    """Run the pending configs of ``tasks``. ``external`` maps the ids of dependencies outside ``tasks`` to their
    tasks (to check they are done). A failing task raises at once unless ``keep_going`` (then it is recorded,
    its dependants are blocked and the rest goes on); an unavailable source never raises."""
    from tqdm.auto import tqdm

    report = report or Report("local")
    start = time.perf_counter()
    todo, finished, outside = prepare(tasks, env, external or {}, report)
    status = {tid: OK for tid in finished}
    bars = {}
    if env.progress:
        for name, c in report.counts.items():
            bars[name] = tqdm(total=c.units, initial=c.done_before, desc=name, unit="unit")
    try:
        for task in todo:
            why = blocked_reason(task, status, outside)
            t0 = time.perf_counter()
            if why is not None:
                outcome = Outcome(task.id, BLOCKED, reason=why)
            else:
                try:
                    outcome = execute(task, env, catch=False)
                except Exception as exc:
                    if not keep_going:
                        raise
                    import traceback

                    outcome = Outcome(task.id, FAILED, reason="".join(traceback.format_exception(exc))[-4000:])
            outcome.seconds = time.perf_counter() - t0
            finish_task(task, outcome, env, status, report, bars)
    finally:
        for bar in bars.values():
            bar.close()
    report.seconds += time.perf_counter() - start
    return report

"""Run the stages of a profile on an engine, or plan them: the layer above the stages and the engines.

    from helpers import orchestration as O
    report = O.run(["pretraining", "finetuning"], "quick")            # local engine, resumes
    report = O.run(["all"], "paper", engine="ray", address="auto")   # a Ray cluster
    print(O.plan_text(O.plan(["all"], "paper")))                     # what it costs, offline

``python -m helpers.run`` is the same from the command line (:mod:`helpers.run`), and the ``run_*`` functions
that the chapters call (one per stage module, e.g. :func:`helpers.stages.pretraining.run_pretraining`) run their
stage through :func:`run_stage`.

The stages (:mod:`helpers.stages`: the registry and one module per stage) declare units and compute them; the
engines (:mod:`helpers.engines`) schedule the units; this module ties the two together: it builds the
:class:`~helpers.stages.base.Env` of a run, gathers the tasks of the stages asked for, locks the results folder,
hands the tasks to an engine and writes each stage's tables.
"""
from __future__ import annotations

from pathlib import Path

from .engines import Report, get_engine
from .stages import REGISTRY, available_stages, stage_module
from .stages.base import Env, Task, clean_temp_files, make_env, results_lock
from .stages.planning import format_plan, make_plan


def expand(names) -> list[str]:
    """Stage names with ``all`` expanded, in registry order, without repeats."""
    names = [names] if isinstance(names, str) else list(names)
    known = available_stages()
    out = []
    for n in names:
        for m in (known if n == "all" else [n]):
            if m not in known:
                raise ValueError(f"unknown stage {m!r}; known: {', '.join(known)} and all")
            if m not in out:
                out.append(m)
    return sorted(out, key=list(REGISTRY).index)


def gather(names, env: Env) -> tuple[list[Task], dict]:
    """``(tasks, external)``: the tasks of the stages ``names`` and, by id, the tasks of other stages they
    depend on (to check those are done)."""
    tasks = []
    for n in names:
        tasks += stage_module(n).tasks(env.profile, env)
    ids = {t.id for t in tasks}
    wanted = {d for t in tasks for d in t.deps if d not in ids}
    external = {}
    for module_name in sorted({d.split(":", 1)[0] for d in wanted}):
        base = Env(env.results_dir, env.profile, env.data_root, env.device, False, {})
        for t in stage_module(module_name).tasks(env.profile, base):
            if t.id in wanted:
                external[t.id] = t
    return tasks, external


def run(names, profile, results_dir=None, data_root=None, device=None, engine: str = "local",
        progress: bool = True, keep_going: bool = False, options: dict | None = None, finalize: bool = True,
        threads: int | None = None, **engine_options) -> Report:
    """Run the stages ``names`` (``"all"`` for every one) of ``profile`` on ``engine`` and write their tables.

    Finished units are skipped: on a profile whose results are complete this only reads them. Returns the
    engine's :class:`helpers.engines.Report` (units planned, done, computed, unavailable, blocked, failed per
    stage, and the tables written). The results folder is locked for the run; temp files a killed run left
    there are removed first. Every task runs with the torch threads it declares (its ``num_cpus``) on either
    engine, so both give the same tables; ``threads`` pins every task to that count instead (CPU results
    depend on it; each unit records its count, ``unit_threads``)."""
    env = make_env(profile, results_dir, data_root, device, progress, options, threads)
    return _run(expand(names), env, engine, keep_going, finalize, **engine_options)


def _run(names, env: Env, engine: str, keep_going: bool, finalize: bool, **engine_options) -> Report:
    run_engine = get_engine(engine)
    report = Report(engine)
    with results_lock(env.results_dir):
        modules = [stage_module(n) for n in names]
        tasks, external = gather(names, env)
        folders = sorted({t.stage for t in tasks} | {"sources", "segmentation_sources"})
        clean_temp_files(env.results_dir, folders)
        run_engine(tasks, env, external, keep_going=keep_going, report=report, **engine_options)
        if finalize:
            for m in modules:
                report.tables.update(m.finalize(env.profile, env))
    return report


def run_stage(name: str, profile, results_dir=None, data_root=None, device=None, progress: bool = True,
              engine: str = "local", options: dict | None = None, finalize: bool = True,
              threads: int | None = None, **engine_options) -> Env:
    """Run one stage (what the chapters call through each module's ``run_*`` function); returns its
    :class:`Env`, from which the module's ``results`` read the tables. ``threads`` as in :func:`run`."""
    env = make_env(profile, results_dir, data_root, device, progress, options, threads)
    _run([name], env, engine, False, finalize, **engine_options)
    return env


def plan(names, profile, results_dir=None, data_root=None, device=None, images_per_s: float | None = None):
    """What running ``names`` would do, without computing or downloading anything (see
    :mod:`helpers.stages.planning`); ``images_per_s`` adds a GPU what-if at that assumed rate."""
    env = make_env(profile, results_dir, data_root, device, False)
    return make_plan(expand(names), env, images_per_s)


def plan_text(p) -> str:
    """A plan (:func:`plan`) as the text ``python -m helpers.run --plan`` prints."""
    return format_plan(p)


__all__ = ["expand", "gather", "make_env", "plan", "plan_text", "run", "run_stage"]

"""The stages of the book, one module each, and the functions that run them on an engine.

=================  ===========================================================================================
``pretraining``    the source models (:mod:`helpers.stages.pretraining`)
``finetuning``     [D]'s sweep and the ground truth (:mod:`helpers.stages.finetuning`)
``scoring``        every metric for every (source, target) (:mod:`helpers.stages.scoring`)
``segmentation``   the U-Net bank: pretraining, fine-tuning, CC-FV scoring (:mod:`helpers.stages.segmentation`)
=================  ===========================================================================================

A stage module provides ``NAME``, ``tasks``, ``run_task``, ``finalize`` and ``missing_inputs`` (see
:mod:`helpers.stages.base`). Adding a stage is one module and one line in :data:`REGISTRY`; a line whose module
does not exist (yet) or lacks the contract is left out of :func:`available_stages`.

    from helpers import stages
    report = stages.run(["pretraining", "finetuning"], "quick")            # local engine, resumes
    report = stages.run(["all"], "paper", engine="ray", address="auto")   # a Ray cluster
    print(stages.plan_text(stages.plan(["all"], "paper")))                # what it costs, offline

``python -m helpers.run`` is the same from the command line.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from .base import Env, Task, clean_temp_files, results_lock

#: stage name -> module; order is the order of ``all``
REGISTRY = {
    "pretraining": "helpers.stages.pretraining",
    "finetuning": "helpers.stages.finetuning",
    "scoring": "helpers.stages.scoring",
    "segmentation": "helpers.stages.segmentation",
    "representations": "helpers.representations",
}
CONTRACT = ("NAME", "tasks", "run_task", "finalize", "missing_inputs")


def _has_contract(path: str) -> bool:
    try:
        if importlib.util.find_spec(path) is None:
            return False
    except ModuleNotFoundError:
        return False
    module = importlib.import_module(path)
    return all(hasattr(module, name) for name in CONTRACT)


def available_stages() -> list[str]:
    """The registered stages whose module exists and provides the contract, in ``all`` order."""
    return [name for name, path in REGISTRY.items() if _has_contract(path)]


def stage_module(name: str):
    if name not in REGISTRY:
        raise ValueError(f"unknown stage {name!r}; known: {', '.join(available_stages())}")
    module = importlib.import_module(REGISTRY[name])
    missing = [n for n in CONTRACT if not hasattr(module, n)]
    if missing:
        raise ValueError(f"stage module {REGISTRY[name]} lacks {missing} (see helpers.stages.base)")
    return module


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


def make_env(profile, results_dir=None, data_root=None, device=None, progress: bool = True,
             options: dict | None = None, threads: int | None = None) -> Env:
    """The :class:`Env` of a run: ``profile`` is a name, a path or a loaded profile; results default to
    ``results/<profile>/`` (``$RESULTS_ROOT`` honoured); ``threads``: torch threads per task (None: the
    engine's default, see :mod:`helpers.threads`)."""
    from ..paths import results_root
    from ..profiles import load_profile

    if not isinstance(profile, dict):
        profile = load_profile(profile)
    return Env(Path(results_dir) if results_dir is not None else results_root(profile["name"]), profile,
               data_root, device, progress, dict(options or {}), threads)


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
        threads: int | None = None, **engine_options):
    """Run the stages ``names`` (``"all"`` for every one) of ``profile`` on ``engine`` and write their tables.

    Finished units are skipped: on a profile whose results are complete this only reads them. Returns the
    engine's :class:`helpers.engines.Report` (units planned, done, computed, unavailable, blocked, failed per
    stage, and the tables written). The results folder is locked for the run; temp files a killed run left
    there are removed first. ``threads`` pins torch's threads for every task (CPU results depend on the count:
    the same ``threads`` gives the same tables on either engine); by default the local engine keeps torch's
    setting and Ray gives a task as many threads as CPUs it reserves."""
    env = make_env(profile, results_dir, data_root, device, progress, options, threads)
    return _run(expand(names), env, engine, keep_going, finalize, **engine_options)[0]


def _run(names, env: Env, engine: str, keep_going: bool, finalize: bool, **engine_options):
    from ..engines import Report, get_engine

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
    return report, env


def run_stage(name: str, profile, results_dir=None, data_root=None, device=None, progress: bool = True,
              engine: str = "local", options: dict | None = None, finalize: bool = True, **engine_options) -> Env:
    """Run one stage (what the chapters call through each module's ``run_*`` function); returns its
    :class:`Env`, from which the module's ``results`` read the tables."""
    env = make_env(profile, results_dir, data_root, device, progress, options)
    _run([name], env, engine, False, finalize, **engine_options)
    return env


def plan(names, profile, results_dir=None, data_root=None, device=None, images_per_s: float | None = None):
    """What running ``names`` would do, without computing or downloading anything (see
    :mod:`helpers.stages.planning`); ``images_per_s`` adds a GPU what-if at that assumed rate."""
    from .planning import make_plan

    env = make_env(profile, results_dir, data_root, device, False)
    return make_plan(expand(names), env, images_per_s)


def plan_text(p) -> str:
    from .planning import format_plan

    return format_plan(p)


__all__ = ["REGISTRY", "Env", "Task", "available_stages", "expand", "gather", "make_env", "plan", "plan_text",
           "run", "run_stage", "stage_module"]

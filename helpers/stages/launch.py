"""The one door from the stages up to :mod:`helpers.orchestration`: :func:`run_stage`.

Each stage module has a ``run_*`` function that a chapter calls (:func:`helpers.stages.pretraining.run_pretraining`,
...): it runs the stage's units on an engine, then reads the stage's tables. Running on an engine is the business
of the layers above the stages (the engines, and orchestration above them), so this is the only place where a
stage reaches up, and it does so when a chapter calls, not when a stage module is imported.
"""
from __future__ import annotations

import logging
import warnings

from ..profiles import load_profile


def run_stage(name: str, profile, results_dir=None, data_root=None, device=None, progress: bool = True,
              engine: str = "local", options: dict | None = None, finalize: bool = True,
              threads: int | None = None, **engine_options):
    """:func:`helpers.orchestration.run_stage`: run the stage ``name`` on ``engine``; returns its
    :class:`~helpers.stages.base.Env`."""
    from ..orchestration import run_stage as _run_stage  # layer: a chapter's run_* runs its stage on an engine

    return _run_stage(name, profile, results_dir, data_root, device, progress, engine, options, finalize,
                      threads, **engine_options)


def side_by_side_engine(profile, section: str, task_cpus: int) -> tuple[str, dict]:
    """``(engine, engine_options)`` that run ``<section>.side_by_side`` tasks at once on this machine (``profile``:
    a name, a path or a loaded profile; ``section``: ``finetuning`` or ``segmentation``): the local engine for 1
    (the default); else a local Ray cluster told that many times a task's CPUs (``task_cpus``), so that Ray
    starts that many tasks together. Each task still pins its own torch threads (its ``num_cpus``, recorded per
    unit), so the tables do not depend on this choice, only the time does (``benchmarks/side_by_side.py``).
    Without ray installed: the local engine, with a warning."""
    if not isinstance(profile, dict):
        profile = load_profile(profile)
    n = int((profile.get(section) or {}).get("side_by_side") or 1)
    if n <= 1:
        return "local", {}
    try:
        import ray  # noqa: F401  (the ray extra)
    except ImportError:
        warnings.warn(f"{section}.side_by_side: {n} needs ray (pip install '.[ray]'); running one task at a time",
                      stacklevel=3)
        return "local", {}
    return "ray", {"num_cpus": n * int(task_cpus),
                   "init_kwargs": {"log_to_driver": False, "logging_level": logging.ERROR}}

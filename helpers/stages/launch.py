"""The one door from the stages up to :mod:`helpers.orchestration`: :func:`run_stage`.

Each stage module has a ``run_*`` function that a chapter calls (:func:`helpers.stages.pretraining.run_pretraining`,
...): it runs the stage's units on an engine, then reads the stage's tables. Running on an engine is the business
of the layers above the stages (the engines, and orchestration above them), so this is the only place where a
stage reaches up, and it does so when a chapter calls, not when a stage module is imported.
"""
from __future__ import annotations


def run_stage(name: str, profile, results_dir=None, data_root=None, device=None, progress: bool = True,
              engine: str = "local", options: dict | None = None, finalize: bool = True,
              threads: int | None = None, **engine_options):
    """:func:`helpers.orchestration.run_stage`: run the stage ``name`` on ``engine``; returns its
    :class:`~helpers.stages.base.Env`."""
    from ..orchestration import run_stage as _run_stage  # layer: a chapter's run_* runs its stage on an engine

    return _run_stage(name, profile, results_dir, data_root, device, progress, engine, options, finalize,
                      threads, **engine_options)

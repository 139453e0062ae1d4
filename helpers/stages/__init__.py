"""The stages of the book, one module each: the registry of stage modules.

===================  =========================================================================================
``pretraining``      the source models (:mod:`helpers.stages.pretraining`)
``finetuning``       [D]'s sweep and the ground truth (:mod:`helpers.stages.finetuning`)
``scoring``          every metric for every (source, target) (:mod:`helpers.stages.scoring`)
``segmentation``     the U-Net bank: pretraining, fine-tuning, CC-FV scoring (:mod:`helpers.stages.segmentation`)
``representations``  [R]'s hidden-representation analyses (:mod:`helpers.stages.representations`)
===================  =========================================================================================

A stage module provides ``NAME``, ``tasks``, ``run_task``, ``finalize`` and ``missing_inputs`` (see
:mod:`helpers.stages.base`). Adding a stage is one module and one line in :data:`REGISTRY`; a line whose module
does not exist (yet) or lacks the contract is left out of :func:`available_stages`.

Running stages on an engine, and planning them, is :mod:`helpers.orchestration` (one layer up, above the engines)::

    from helpers import orchestration
    report = orchestration.run(["pretraining", "finetuning"], "quick")
    print(orchestration.plan_text(orchestration.plan(["all"], "paper")))

``stages.run``, ``stages.plan``, ``stages.plan_text``, ``stages.run_stage``, ``stages.make_env``,
``stages.gather`` and ``stages.expand`` still work, with a :class:`DeprecationWarning` (:mod:`helpers.compat`).
``python -m helpers.run`` is the same from the command line.
"""
from __future__ import annotations

import importlib
import importlib.util

from ..compat import forward
from .base import Env, Task

#: stage name -> module; order is the order of ``all``
REGISTRY = {
    "pretraining": "helpers.stages.pretraining",
    "finetuning": "helpers.stages.finetuning",
    "scoring": "helpers.stages.scoring",
    "segmentation": "helpers.stages.segmentation",
    "representations": "helpers.stages.representations",
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
    """The module of the registered stage ``name``, checked for the contract."""
    if name not in REGISTRY:
        raise ValueError(f"unknown stage {name!r}; known: {', '.join(available_stages())}")
    module = importlib.import_module(REGISTRY[name])
    missing = [n for n in CONTRACT if not hasattr(module, n)]
    if missing:
        raise ValueError(f"stage module {REGISTRY[name]} lacks {missing} (see helpers.stages.base)")
    return module


# run, plan, ... moved to helpers.orchestration: served from there on use, with a DeprecationWarning
__getattr__ = forward(__name__)

__all__ = ["CONTRACT", "REGISTRY", "Env", "Task", "available_stages", "stage_module"]

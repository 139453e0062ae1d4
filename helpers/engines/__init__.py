"""Engines run the tasks that the stage modules of :mod:`helpers.stages` declare.

``local``  every task in this process, in dependency order (:mod:`helpers.engines.local`)
``ray``    each task a Ray task with its resources and dependencies, on a local or remote cluster
           (:mod:`helpers.engines.ray`; ``pip install '.[ray]'``)

Both store every finished unit on the driver through :meth:`helpers.runner.Stage.store` (atomic JSON per unit),
so the same configs give the same keys on both and a run started on one can be finished on the other. Both run
a task with the torch threads the task declares (:attr:`helpers.stages.base.Task.threads`, its ``num_cpus``;
``threads=``/``--threads`` overrides it for every task), so they give the same tables by default.

The engines sit above the stages (they import :mod:`helpers.stages.base` and the registry of
:mod:`helpers.stages`) and below :mod:`helpers.orchestration`, which hands them the tasks of a run.
"""
from . import local, ray
from .common import Report

#: engine name -> its ``run`` function
_RUNS = {"local": local.run, "ray": ray.run}
ENGINES = tuple(_RUNS)


def get_engine(name: str):
    """The ``run`` function of an engine."""
    if name not in _RUNS:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    return _RUNS[name]


__all__ = ["ENGINES", "Report", "get_engine"]

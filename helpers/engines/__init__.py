"""Engines run the tasks that the stage modules of :mod:`helpers.stages` declare.

``local``  every task in this process, in dependency order (:mod:`helpers.engines.local`)
``ray``    each task a Ray task with its resources and dependencies, on a local or remote cluster
           (:mod:`helpers.engines.ray`; ``pip install '.[ray]'``)

Both store every finished unit on the driver through :meth:`helpers.runner.Stage.store` (atomic JSON per unit),
so the same configs give the same keys on both and a run started on one can be finished on the other.
"""
from .common import Report

ENGINES = ("local", "ray")


def get_engine(name: str):
    """The ``run`` function of an engine."""
    if name == "local":
        from .local import run
    elif name == "ray":
        from .ray import run
    else:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    return run


__all__ = ["ENGINES", "Report", "get_engine"]

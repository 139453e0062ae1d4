"""Names that moved to another module, kept importable from the old one with a DeprecationWarning.

One table, :data:`MOVED`: ``{"old.module": {"name": "new.module"}}``. A module listed there ends with
``__getattr__ = forward(__name__)``; looking up a moved name on it warns and returns the object from its new
module (imported with :mod:`importlib` at that moment, so the old module need not import the new one: the new
one is often a higher layer that imports the old).
"""
from __future__ import annotations

import importlib
import warnings

__all__ = ["MOVED", "forward"]

MOVED: dict[str, dict[str, str]] = {
    "helpers.scoring": {
        "run_scoring": "helpers.stages.scoring",
        "scoring_configs": "helpers.stages.scoring",
        "score_unit": "helpers.stages.scoring",
        "target_dataset": "helpers.stages.scoring",
        "RESOURCES": "helpers.stages.scoring",
        "set_level_comparison": "helpers.stages.scoring",
        "extraction_times": "helpers.stages.scoring",
    },
    "helpers.segmentation.scoring": {
        "run_segmentation_scoring": "helpers.stages.segmentation",
        "scoring_configs": "helpers.stages.segmentation",
    },
}


def forward(module: str):
    """A module ``__getattr__`` for ``module``: its moved names (:data:`MOVED`) with a DeprecationWarning,
    AttributeError for anything else."""
    moved = MOVED.get(module, {})

    def __getattr__(name: str):
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} moved to {moved[name]}.{name}; import it from there",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(moved[name]), name)

    return __getattr__

"""Old import paths that keep working for a while: one table of what moved where.

``MOVED["old.module"]["name"]`` is the module that now defines ``name``. A module that lost names puts
``__getattr__ = forward(__name__)`` at its bottom; reading a moved name there warns (``DeprecationWarning``,
pointing at the caller) and returns the object from its new module, imported on first use through
:mod:`importlib` (so the old module does not import the new one, which usually sits in a higher layer).
"""
from __future__ import annotations

import importlib
import warnings

MOVED: dict[str, dict[str, str]] = {
    # the segmentation stage's run functions live with the stage
    "helpers.segmentation.training": {
        "run_segmentation_pretraining": "helpers.stages.segmentation",
        "run_segmentation_finetuning": "helpers.stages.segmentation",
    },
}


def forward(module_name: str):
    """A module ``__getattr__`` for ``module_name`` that forwards its moved names (:data:`MOVED`)."""

    def __getattr__(name: str):
        target = MOVED.get(module_name, {}).get(name)
        if target is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        warnings.warn(f"{module_name}.{name} has moved to {target}.{name}; import it from there",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), name)

    return __getattr__

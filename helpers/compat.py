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
    # the "which metric to trust" functions used to be reached through helpers.evaluation
    "helpers.evaluation": {
        "IMAGENET_TRAIN_IMAGES": "helpers.evaluation_trust",
        "RADIMAGENET_IMAGES": "helpers.evaluation_trust",
        "MEDMNIST_2D_FLAGS": "helpers.evaluation_trust",
        "UNION_SOURCES": "helpers.evaluation_trust",
        "medmnist_train_sizes": "helpers.evaluation_trust",
        "training_set_sizes": "helpers.evaluation_trust",
        "static_baseline": "helpers.evaluation_trust",
        "torchvision_imagenet_meta": "helpers.evaluation_trust",
        "architecture_baselines": "helpers.evaluation_trust",
        "loto_prior": "helpers.evaluation_trust",
        "truth_concordance": "helpers.evaluation_trust",
        "bootstrap_differences": "helpers.evaluation_trust",
        "rank_average": "helpers.evaluation_trust",
        "ensembles": "helpers.evaluation_trust",
        "loto_selection": "helpers.evaluation_trust",
        "nested_prior_values": "helpers.evaluation_trust",
        "read_metric_benchmark": "helpers.evaluation_trust",
        "nearest_size": "helpers.evaluation_trust",
        "pareto_front": "helpers.evaluation_trust",
        "cost_quality": "helpers.evaluation_trust",
        "cost_quality_figure": "helpers.evaluation_trust",
        "parse_rule": "helpers.ground_truth",
        "select_ground_truth": "helpers.ground_truth",
        "ground_truth_noise": "helpers.ground_truth",
        "ground_truth_replicates": "helpers.ground_truth",
        "noise_in_differences": "helpers.ground_truth",
    },
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

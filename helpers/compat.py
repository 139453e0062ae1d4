"""Old names of moved objects: one table, and the module ``__getattr__`` that forwards them with a warning.

When a name moves from one module to another, the old module stops importing it (that import usually ran against
the layers) and instead forwards it lazily, on first use, with a :class:`DeprecationWarning`::

    # helpers/compat.py: one entry per old module, old name -> new module (the name stays the same)
    MOVED = {
        "helpers.stages": {"run": "helpers.orchestration", ...},
        ...
    }

    # helpers/stages/__init__.py (the old module), at the end
    from ..compat import forward
    __getattr__ = forward(__name__)

``helpers.stages.run`` then warns ``helpers.stages.run is now helpers.orchestration.run`` and returns the very
object of :mod:`helpers.orchestration`. To move a name, add it to :data:`MOVED` under its old module (add the old
module's entry and its two ``forward`` lines if it has none yet). A module-level ``__getattr__`` is only consulted
for names the module does not define, so the old module must not import the name itself.

This module is the foundation layer: it imports nothing from ``helpers`` at module level (the new module is
imported when an old name is used, which is what lets a lower layer name a higher one without importing it).
"""
from __future__ import annotations

import importlib
import warnings

#: old module -> {name: new module}; a plain literal, so a reader (and a test) sees every old name in one place
MOVED: dict[str, dict[str, str]] = {
    "helpers.stages": {
        "run": "helpers.orchestration",
        "run_stage": "helpers.orchestration",
        "plan": "helpers.orchestration",
        "plan_text": "helpers.orchestration",
        "make_env": "helpers.orchestration",
        "gather": "helpers.orchestration",
        "expand": "helpers.orchestration",
    },
    "helpers.representations": {
        "RepresentationsPlan": "helpers.stages.representations",
        "representations_configs": "helpers.stages.representations",
        "run_representations": "helpers.stages.representations",
        "build_tables": "helpers.stages.representations",
        "load_activations": "helpers.stages.representations",
        "finalize": "helpers.stages.representations",
        "TABLES": "helpers.stages.representations",
        "plot_reference_cca": "helpers.viz",
        "plot_reference_predictions": "helpers.viz",
        "plot_gain_scatter": "helpers.viz",
        "plot_similarity_by_stage": "helpers.viz",
        "plot_similarity_heatmaps": "helpers.viz",
        "plot_prediction_bars": "helpers.viz",
        "plot_weight_change": "helpers.viz",
    },
    "helpers.segmentation": {
        "run_segmentation_pretraining": "helpers.stages.segmentation",
        "run_segmentation_finetuning": "helpers.stages.segmentation",
        "run_segmentation_scoring": "helpers.stages.segmentation",
    },
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
    # the scoring stage's functions used to be reached through the library module
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
    # the segmentation stage's run functions live with the stage
    "helpers.segmentation.training": {
        "run_segmentation_pretraining": "helpers.stages.segmentation",
        "run_segmentation_finetuning": "helpers.stages.segmentation",
    },
}


def moved(module_name: str, name: str) -> str | None:
    """The module that now holds ``module_name.name``, or None when the name did not move from there."""
    return MOVED.get(module_name, {}).get(name)


def forward(module_name: str):
    """A module-level ``__getattr__`` for the old module ``module_name`` (pass ``__name__``): a name listed under
    it in :data:`MOVED` is imported from its new module, with a :class:`DeprecationWarning`; any other name raises
    :class:`AttributeError` as usual."""

    def __getattr__(name: str):
        target = moved(module_name, name)
        if target is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        warnings.warn(f"{module_name}.{name} is now {target}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), name)

    return __getattr__


__all__ = ["MOVED", "forward", "moved"]

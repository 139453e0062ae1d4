"""Training, as one import (kept for code written against the earlier single module): the engine of
:mod:`helpers.trainer` (MedMNIST AUC, union label space, safe state, the grouped training loop, recipes) and the
pretraining and fine-tuning stages of :mod:`helpers.stages` (sources, the sweep, the ground truth).

Deprecated: importing it warns (:class:`DeprecationWarning`); new code imports from those modules directly, and
nothing inside ``helpers`` imports this one. Every name below is the same object.
"""
from __future__ import annotations

import warnings

from .trainer import *  # noqa: F401,F403
from .trainer import __all__ as _engine_all
from .trainer.loop import (_epoch_order, _rng_state, _seeded_rng_state, _set_rng_state,  # noqa: F401
                          _stream, _sync_streams)
# the private names the earlier single module had
from .trainer.recipes import load_flag as _load, recipe_section as _section  # noqa: F401
from .trainer.recipes import run_config as _run_config  # noqa: F401
from .trainer.recipes import subsample as _subsample  # noqa: F401
from .trainer.state import _flatten_state, _unflatten_state  # noqa: F401
from .stages.finetuning import (RUN_COLUMNS, finetune_group, finetuning_configs, ground_truth_folds,  # noqa: F401
                                ground_truth_seeds, ground_truth_table, run_finetuning, select_runs, target_datasets,
                                write_ground_truth)
from .stages.pretraining import (check_imagenet, pretrain_unit, pretraining_configs, resolve_source,  # noqa: F401
                                 run_pretraining, source_table, sources_dir, union_name)

__all__ = list(_engine_all) + [
    "RUN_COLUMNS", "finetune_group", "finetuning_configs", "ground_truth_folds", "ground_truth_seeds",
    "ground_truth_table",
    "run_finetuning", "select_runs", "target_datasets", "write_ground_truth", "check_imagenet", "pretrain_unit",
    "pretraining_configs", "resolve_source", "run_pretraining", "source_table", "sources_dir", "union_name"]

warnings.warn("helpers.training is deprecated: import the training engine from helpers.trainer and the "
              "pretraining and fine-tuning stages from helpers.stages.pretraining / helpers.stages.finetuning",
              DeprecationWarning, stacklevel=2)

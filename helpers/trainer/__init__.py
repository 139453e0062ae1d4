"""The classification trainer (library layer): MedMNIST's AUC, the union label space, safe training state,
the grouped device-resident training loop and the recipes read from a profile.

Modules
-------
auc       task kinds, :func:`medmnist_auc` / :func:`medmnist_acc`, :func:`auc_over_present`, :func:`safe_auc`
union     :class:`UnionLabelSpace` (the leave-target-out source's joint labels), :data:`UNION_ORDER`,
          :func:`balanced_weights`
state     :func:`save_state` / :func:`load_state` (safetensors + JSON, no pickle), :class:`ResumableTraining`
loop      :class:`RunConfig`, :class:`Run`, :func:`train_runs`, :func:`evaluate`, :func:`test_run`,
          :func:`make_optimizer`, :class:`InterruptTraining`
recipes   :func:`recipe_section`, :func:`run_config`, :data:`RADIMAGENET_RECIPE`, :func:`read_image_folder`,
          :func:`pretrain_image_folder`, :func:`load_flag`, :func:`subsample`

Formerly ``helpers.engine``, a name a reader confused with the task engines of :mod:`helpers.engines`; that name
still works, with a :class:`DeprecationWarning`. The stages that use it (pretraining, fine-tuning, scoring) are in :mod:`helpers.stages`.
"""
from .auc import (BINARY, MULTICLASS, MULTILABEL, auc_over_present, medmnist_acc, medmnist_auc, probabilities,
                  safe_auc, task_kind)
from .loop import (InterruptTraining, Run, RunConfig, evaluate, make_optimizer, test_run, train_runs)
from .recipes import (IMAGE_SUFFIXES, RADIMAGENET_RECIPE, data_hash, load_flag, pretrain_image_folder,
                      read_image_folder, recipe_section, run_config, subsample)
from .state import ResumableTraining, load_state, save_state
from .union import CHEST_NO_FINDING, CHEST_PNEUMONIA, ORGANS, UNION_ORDER, UnionLabelSpace, balanced_weights

__all__ = [
    "BINARY", "MULTICLASS", "MULTILABEL", "auc_over_present", "medmnist_acc", "medmnist_auc", "probabilities",
    "safe_auc", "task_kind", "InterruptTraining", "Run", "RunConfig", "evaluate", "make_optimizer", "test_run",
    "train_runs", "IMAGE_SUFFIXES", "RADIMAGENET_RECIPE", "data_hash", "load_flag", "pretrain_image_folder",
    "read_image_folder", "recipe_section", "run_config", "subsample", "ResumableTraining", "load_state",
    "save_state",
    "CHEST_NO_FINDING", "CHEST_PNEUMONIA", "ORGANS", "UNION_ORDER", "UnionLabelSpace", "balanced_weights",
]

"""Segmentation transferability ([S], PROTOCOL.md section 7): data, a ResNet-18 U-Net, training with
Dice + cross-entropy and the leave-one-out model bank whose fine-tuned test Dice is the ground truth.

Submodules
----------
data      the stored sets under ``<data root>/segmentation/``, a user's folder of images and masks, and
          :class:`~helpers.segmentation.data.SegmentationTensorDataset` (on the device, augmented in batches)
model     :class:`~helpers.segmentation.model.UNet` (torchvision ResNet-18 encoder), decoder features,
          safetensors checkpoints
training  loss, Dice per class, the train loop, the union label space, the units of the bank (pretraining
          and fine-tuning one source), sources and the ground-truth table
scoring   CC-FV, its ablations and the baselines for one (source, target)

The stage that runs the bank (``run_segmentation_pretraining``, ``run_segmentation_finetuning``,
``run_segmentation_scoring``) is :mod:`helpers.stages.segmentation`; their old names here still work, with a
:class:`DeprecationWarning` (:mod:`helpers.compat`).
"""
from ..compat import forward
from .data import (SEGMENTATION_SETS, SegAugmentConfig, SegmentationData, SegmentationFileError,
                   SegmentationTensorDataset, available_segmentation_sets, load_mask_folder, load_segmentation,
                   read_manifest, segmentation_path)
from .model import (UNet, decoder_block_names, load_segmentation_checkpoint, replace_head,
                    save_segmentation_checkpoint)
from .training import (FINETUNING_COLUMNS, SegRecipe, SegUnionLabels, dice_ce_loss, dice_long_table,
                       dice_per_case, dice_per_class, evaluate_segmentation, finetuning_seed, finetuning_seeds,
                       load_segmentation_source, mean_foreground_dice, resolve_segmentation_source,
                       segmentation_finetuning_configs, segmentation_ground_truth, segmentation_ground_truth_seeds,
                       segmentation_normalization, segmentation_pretraining_configs, segmentation_section,
                       segmentation_source_table, segmentation_sources, subset_indices, target_datasets,
                       train_segmentation, write_segmentation_ground_truth)

__all__ = [
    "SEGMENTATION_SETS", "SegAugmentConfig", "SegmentationData", "SegmentationFileError",
    "SegmentationTensorDataset", "available_segmentation_sets", "load_mask_folder", "load_segmentation",
    "read_manifest", "segmentation_path",
    "UNet", "decoder_block_names", "load_segmentation_checkpoint", "replace_head", "save_segmentation_checkpoint",
    "FINETUNING_COLUMNS", "SegRecipe", "SegUnionLabels", "dice_ce_loss", "dice_long_table", "dice_per_case",
    "dice_per_class", "evaluate_segmentation", "finetuning_seed", "finetuning_seeds", "load_segmentation_source",
    "mean_foreground_dice",
    "resolve_segmentation_source",
    "segmentation_finetuning_configs", "segmentation_ground_truth", "segmentation_ground_truth_seeds",
    "segmentation_normalization",
    "segmentation_pretraining_configs", "segmentation_section", "segmentation_source_table",
    "segmentation_sources", "subset_indices", "target_datasets", "train_segmentation",
    "write_segmentation_ground_truth",
]


# the stage's run functions, importable from here as before: forwarded on use (this library package sits below
# the stages), with a DeprecationWarning
__getattr__ = forward(__name__)

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Pretraining: the source models
#
# ## Overview
# Transferability estimation ranks *candidate source models* for a target task. This chapter builds the
# candidates of the dataset-transferability experiment of [D] {cite}`juodelyte2024dataset`: one ResNet-18
# trained from scratch per MedMNIST flag {cite}`yang2023medmnist`, the leave-target-out union of the other
# flags, ImageNet weights, a RadImageNet checkpoint when the user has one, and random initialisation as a
# baseline. Every source is stored as a safetensors checkpoint with a JSON sidecar describing how it was made.
#
# 1. The candidate sources of the profile
# 2. Training the single-dataset sources
# 3. The union source's joint label space
# 4. Which sources are available here
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | [Data chapter](01_data) | Necessary | the flags and their splits |
# | Training a CNN with PyTorch | Helpful | optimiser, schedule, early stopping |
#
# - **Time to run**: about four minutes on the quick profile (2-core CPU; most of it the segmentation bank); hours per source on a GPU for the
#   paper profile.

# %% tags=["parameters", "hide-input"]
profile = "quick"   # profile name (profiles/<name>.yml) or path to a profile file
data_root = None    # None: $DATA_ROOT, else data/
device = None       # None: the profile's device (auto: cuda when present)
engine = None       # the bank's tasks: None runs segmentation.side_by_side at once (the profile's); "local" or "ray"

# %% [markdown]
# ## Imports

# %% tags=["hide-input"]
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from helpers import booktext
from helpers import trainer
from helpers.stages import pretraining as P
from helpers.paths import results_root
from helpers.profiles import load_profile, profile_flags, profile_targets, resolve_device

# %% tags=["hide-input"]
cfg = load_profile(profile)
flags = profile_flags(cfg, data_root)
targets = profile_targets(cfg, data_root)
device = device or resolve_device(cfg)
out = results_root(cfg["name"])
print(f"profile {cfg['name']!r}: flags {flags}, targets {targets}, device {device}")

# %% [markdown]
# ## The candidate sources of the profile
# PROTOCOL section 3 lists five kinds of source. The table says what each source of this profile is and how
# it is obtained; sources trained here are the single-dataset and union ones.

# %% tags=["hide-input"]
KINDS = {
    "imagenet": ("torchvision ResNet-18, IMAGENET1K_V1 weights", "downloaded through torchvision"),
    "radimagenet": ("ResNet-18 trained on RadImageNet (165 classes)", "user checkpoint (data-use agreement)"),
    "random": ("ResNet-18, random initialisation", "baseline, nothing to train"),
    "medmnist_union": ("ResNet-18 on the union of the other flags, joint multi-hot labels, BCE",
                       "trained here, one per target"),
}
sources = cfg["sources"]["dataset"]


def kind_of(s):
    if s in KINDS:
        return KINDS[s]
    if P.is_segmentation_source(s):
        on = "all five segmentation sets" if s == P.SEG_UNION else P.segmentation_unit_name(s)
        return (f"ResNet-18 encoder of a U-Net pre-trained to segment {on}", "segmentation stage, trained here")
    return (f"ResNet-18 trained on {s} (MedMNIST recipe)", "trained here" if s in flags else "flag not in the data root")


kinds = pd.DataFrame([{"source": s, **dict(zip(["model", "obtained"], kind_of(s)))} for s in sources]).set_index("source")
kinds

# %% [markdown]
# One row per candidate source: the model and where its weights come from.

# %% [markdown]
# ## Training the single-dataset sources
# Each single-dataset source is a ResNet-18 trained from scratch on one flag's training split with the
# MedMNIST benchmark recipe (Adam, learning rate 1e-3, step decay), the checkpoint with the best validation AUC
# kept. Training runs on the device with batched augmentation there; every epoch can be resumed after an
# interruption, and a finished source is never retrained (results are keyed by a hash of the recipe). The same
# units run from the command line, `python -m helpers.run pretraining --profile <name>` (on a Ray cluster with
# `--engine ray`); when they are stored already, this chapter only reads them.

# %% tags=["hide-input"]
recipes = pd.DataFrame({kind: {k: str(v) for k, v in trainer.recipe_section(cfg, kind).items()}
                        for kind in ("single_dataset", "union")})
recipes

# %% [markdown]
# The recipes the profile uses for single-dataset and union sources (the union: SGD with step decay, BCE over
# the joint label space, class-balanced sampling, early stopping on validation loss). In the quick profile they are cut to a few epochs on a
# subset of each training split (`max_train_images`, `max_val_images`) at the stored 28 px, so that it runs on
# a CPU in about a minute; the paper profile trains 100 epochs on the whole split at 224 px. In a notebook of
# your own, one call trains (or reads back) every source of a profile:

# %%
pre = P.run_pretraining(cfg, flags, targets, out, root=data_root, device=device, progress=False)

# %% tags=["hide-input"]
cols = ["source", "kind", "flags", "train_images", "val_images", "n_outputs", "epochs_run", "best_epoch",
        "val_loss", "val_auc", "val_acc", "train_seconds"]
pre[cols].set_index("source").round(3) if not pre.empty else pre

# %% [markdown]
# One row per trained source: the images it saw, its output units, how many epochs ran and which one was kept,
# and the validation loss, AUC and accuracy (MedMNIST's definitions) of the kept checkpoint.

# %% tags=["hide-input"]
if not pre.empty:
    hist = pd.concat([pd.DataFrame(h).assign(source=s) for s, h in zip(pre["source"], pre["history"])])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for s, h in hist.groupby("source"):
        axes[0].plot(h["epoch"], h["train_loss"], "o--", label=f"{s} train")
        axes[0].plot(h["epoch"], h["val_loss"], "o-", label=f"{s} val")
        axes[1].plot(h["epoch"], h["val_auc"], "o-", label=s)
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[1].set(xlabel="epoch", ylabel="val AUC", title="validation AUC")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# **Figure 1.** Training (dashed) and validation (solid) loss, and validation AUC, per epoch of each source
# trained in this chapter.

# %% [markdown]
# ## The union source's joint label space
# The `medmnist` source of [D] is trained on the union of every flag except the target, with one joint
# multi-hot label space and a BCE loss: organa/organc/organs share one 11-class block, chestmnist contributes
# its 14 labels and an extra "no finding" unit, and when chestmnist is in the union pneumoniamnist maps onto
# chest's "pneumonia" (6) and "no finding" (14) units. Class-balanced sampling draws every unit equally often
# (with replacement, on the device with `torch.multinomial`). The table shows the layout for the full
# collection without each of this profile's targets.

# %% tags=["hide-input"]
from helpers.data import MEDMNIST_2D_FLAGS

layout_rows = []
for t in targets:
    space = trainer.UnionLabelSpace.build([f for f in MEDMNIST_2D_FLAGS if f != t])
    for f, units in space.layout.items():
        layout_rows.append({"left out": t, "flag": f, "units": f"{units[0]}..{units[-1]}" if f != "pneumoniamnist"
                            or space.chest_base is None else str(units), "n_units": len(units),
                            "total": space.n_outputs})
layout = pd.DataFrame(layout_rows)
layout.pivot_table(index="flag", columns="left out", values="units", aggfunc="first", sort=False)

# %% [markdown]
# Each cell is the range of joint output units a flag's classes occupy when the column's target is left out
# (pneumoniamnist lists its two units: normal, pneumonia). Leaving a flag out shifts the blocks after it.
# Union sources are trained where the profile lists `medmnist_union`, one per target, on the flags present in
# the data root: in the quick profile each union holds the two other available flags (the rows
# `medmnist_union__<target>` of the training table above), trained for two epochs only.

# %% [markdown]
# ## Segmentation encoders as sources
# The book's own benchmark needs more than a handful of candidates per target, or its correlations are noise.
# The profile's `seg_*` sources are the ResNet-18 encoders of the U-Nets of the segmentation bank (see the
# [Segmentation chapter](07_segmentation)): one U-Net pre-trained on each 2D segmentation set, and `seg_union`
# on all five together. The U-Net's encoder *is* a torchvision ResNet-18 without its pooling and classifier, so
# it maps onto a ResNet-18 classifier name for name (`helpers.models.classifier_from_unet`); the new
# classification head is trained in fine-tuning as for any source. These encoders have no classification head
# of their own, so the metrics of a source head's logits (LEEP, NCE) do not apply to them (the Scoring chapter
# records why). The bank's pretraining runs here, through the segmentation stage, so that the encoders exist
# before fine-tuning; the Segmentation chapter then only reads them.

# %% tags=["hide-input"]
seg_sources = P.segmentation_encoder_sources(cfg)
if seg_sources:
    from helpers.stages import segmentation as SG

    seg_pre = SG.run_segmentation_pretraining(cfg, out, root=data_root, device=device, progress=False,
                                             engine=engine)
    used = {P.segmentation_unit_name(s): s for s in seg_sources}
    seg_table = seg_pre[seg_pre["source"].isin(used)].assign(as_source=lambda d: d["source"].map(used))
    booktext.glue(n_seg=len(seg_table))
    display(seg_table.set_index("as_source")[["sets", "n_classes", "train_images", "epochs_run", "best_epoch",
                                              "val_dice"]].round(3))
else:
    booktext.glue(n_seg=0)
    print("This profile lists no segmentation encoder among its sources.")

# %% [markdown]
# The {glue:text}`n_seg` segmentation U-Nets whose encoders are classification sources here: the sets each was
# trained on, its classes (background included), training images, epochs run and kept, and its validation Dice.

# %% [markdown]
# ## Which sources are available here
# A source that cannot be obtained here (ImageNet weights without a network, RadImageNet without a
# checkpoint) is recorded as unavailable with the reason; the later chapters leave it out instead of failing.

# %% tags=["hide-input"]
avail = P.source_table(cfg, targets, out)
from helpers.runner import atomic_write_csv

atomic_write_csv(avail, out / "sources.csv")
summary = (avail.groupby("source", sort=False)
           .agg(available=("available", "all"), reason=("reason", "first")))
summary

# %% [markdown]
# One row per candidate source: whether it can be used for every target, and if not, why. The full table
# (per target, with the checkpoint each source resolves to) is written to `results/<profile>/sources.csv`.

# %% [markdown]
# ## Summary
# - Single-dataset sources are trained on the device, resumably, and stored as safetensors checkpoints with a
#   JSON sidecar (architecture, classes, recipe, data hashes) under `results/<profile>/sources/`.
# - The union source uses [D]'s joint label space; its mapping is tested unit by unit.
# - The segmentation bank's encoders (`seg_*`) join the candidates as ResNet-18 classifiers without a head.
# - Unavailable sources are reported with their reason instead of stopping the book.
#
# ## What's next
# The Fine-tuning chapter fine-tunes every available source on every target with [D]'s sweep to obtain the
# ground truth that transferability scores are judged against.

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
# # Data: the MedMNIST targets and their folds
#
# ## Overview
# Every experiment in this book draws on the 2D MedMNIST collection {cite}`yang2023medmnist`. This chapter
# loads each flag of the chosen profile from the data root, checks it against the MD5 that the `medmnist`
# package records, shows what the images look like, how the classes are distributed over the official
# splits, and which subsets the ground-truth protocol of [D] {cite}`juodelyte2024dataset` fine-tunes on.
#
# 1. Loading and verifying the files
# 2. A look at the images, and at what training augmentation does to them
# 3. Class balance per split
# 4. The fold subsets of [D]
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | [MedMNIST v2](https://medmnist.com/) | Necessary | the 2D flags, their tasks and splits |
# | NumPy and pandas | Helpful | tables below are pandas DataFrames |
#
# - **Time to run**: under a minute on the quick profile.

# %% tags=["parameters", "hide-input"]
profile = "quick"   # profile name (profiles/<name>.yml) or path to a profile file
flags = None        # None: the profile's flags; or a list / comma-separated string of flags
data_root = None    # None: $DATA_ROOT, else data/
per_class = 6       # images per class in the sample grids

# %% [markdown]
# ## Imports

# %% tags=["hide-input"]
# %matplotlib inline
import warnings

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from helpers import data as D
from helpers import viz
from helpers.paths import data_root as resolve_root
from helpers.paths import results_root
from helpers.profiles import load_profile, profile_flags
from helpers.runner import atomic_write_csv

# %% tags=["hide-input"]
cfg = load_profile(profile)
if flags is None:
    flags = profile_flags(cfg, data_root)
elif isinstance(flags, str):
    flags = [f.strip() for f in flags.split(",") if f.strip()]
size = cfg["data"]["file_size"]
print(f"profile {cfg['name']!r}, data root {resolve_root(data_root)}, flags {flags}, file size {size} px")

# %% [markdown]
# ## Loading and verifying the files
# Each flag is read from `<data root>/medmnist/`. A file whose MD5 differs from the official one still loads,
# but with a warning; the table records the outcome, so a reader always knows whether a result rests on the
# official release or on a subset.

# %%
datasets, status = {}, []
for flag in flags:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", D.MD5MismatchWarning)
        d = D.load_medmnist(flag, size=size, root=data_root)
    for w in caught:
        print("warning:", w.message)
    datasets[flag] = d
    status.append({"flag": flag, "task": d.task, "channels": d.n_channels, "classes": d.n_classes,
                   "train": len(d.labels["train"]), "val": len(d.labels["val"]), "test": len(d.labels["test"]),
                   "md5": d.md5, "official_md5": d.md5_ok, "file": d.path.name})
status = pd.DataFrame(status).set_index("flag")
status

# %% [markdown]
# The table lists, per flag, the task type and number of classes that `medmnist.INFO` gives, the size of each
# official split as found in the file, and whether the file's MD5 is the official one. `official_md5 = False`
# marks a subset or a re-saved copy (here the offline copies described in the data folder's MANIFEST.json).

# %% [markdown]
# ## A look at the images

# %% tags=["hide-input"]
for flag, d in datasets.items():
    fig = viz.sample_grid(d, "train", per_class=per_class)
    plt.show()
    display(Markdown(f"*Figure: {per_class} random training images per class of **{flag}** "
                     f"({d.task}, {d.n_channels} channel{'s' if d.n_channels > 1 else ''}, {d.size} px), "
                     "one row per class, the class id and name at the left.*"))

# %% [markdown]
# Training sees these images through [D]'s augmentation: horizontal flip, random resized crop, a small
# rotation, sharpness, autocontrast and histogram equalisation. Here they run as batched tensor operations on
# the device that holds the data set (the GPU when there is one), never image by image through PIL.

# %% tags=["hide-input"]
for flag, d in datasets.items():
    viz.augmentation_grid(d, image_size=cfg["data"]["image_size"])
    plt.show()
    display(Markdown(f"*Figure: four training images of **{flag}**, resized to the profile's "
                     f"{cfg['data']['image_size']} px model input (left column) and six augmented views of each, "
                     "as `helpers.data.TensorImageDataset` produces them for training.*"))

# %% [markdown]
# ## Class balance per split

# %% tags=["hide-input"]
counts = pd.concat([D.class_count_table(d) for d in datasets.values()], ignore_index=True)
for flag in datasets:
    viz.class_count_bars(counts, flag)
    plt.show()
    display(Markdown(f"*Figure: images per class in the train, val and test splits of **{flag}**.*"))
counts.pivot_table(index=["flag", "class_id", "class_name"], columns="split", values="count").astype(int)

# %% [markdown]
# The table gives the same counts: one row per class, one column per split. Strong imbalance (for example
# pneumonia against normal) is the reason the ground truth is measured with AUC rather than accuracy.

# %% [markdown]
# ## The fold subsets of [D]
# [D] fine-tunes each target on five small subsets drawn once with `np.random.seed(24)`: for every fold,
# `n_classes * 100` training images and `n_classes * 25` validation images (the whole validation split when it
# is smaller), always testing on the whole official test split. Transferability scores use fold 1's training
# subset. `helpers.data.paper_fold_indices` reproduces that random stream exactly.

# %%
fold_tables = pd.concat([D.fold_table(d, folds=5, seed=cfg["data"]["fold_seed"]) for d in datasets.values()],
                        ignore_index=True)
for flag in datasets:
    viz.fold_sizes_plot(fold_tables, flag)
    plt.show()
    display(Markdown(f"*Figure: size of the train and val subsets of each of the five folds of **{flag}**.*"))
fold_sizes = (fold_tables.groupby(["flag", "fold", "split"])["subset_size"].first()
              .unstack("split")[["train", "val", "test"]])
fold_sizes

# %% [markdown]
# Each row is one fold of one flag: the train and val subset sizes and the whole test split. Where the
# validation split is smaller than `n_classes * 25` (retinamnist: 120 < 125) every fold shares the whole
# validation split; otherwise each fold draws its own.

# %% tags=["hide-input"]
fold1 = fold_tables[(fold_tables["fold"] == 1) & (fold_tables["split"] == "train")]
fold1.pivot_table(index="flag", columns="class_id", values="count", fill_value=0)

# %% [markdown]
# Class counts within fold 1's training subset, the set every transferability metric in this book is computed
# on. The draw is not stratified, so it follows the class balance of the full training split.

# %% tags=["hide-input"]
out = results_root(cfg["name"])
atomic_write_csv(status.reset_index(), out / "data_files.csv")
atomic_write_csv(counts, out / "data_class_counts.csv")
atomic_write_csv(fold_tables, out / "data_folds.csv")
print("wrote", sorted(p.name for p in out.glob("data_*.csv")))

# %% [markdown]
# ## Summary
# - The profile's flags load from the data root; files that differ from the official release say so.
# - The fold subsets of [D] are small (hundreds of images), the regime in which transferability estimation
#   matters most.
# - The tables behind every figure are written to `results/<profile>/data_*.csv`.
#
# ## What's next
# The following chapters train the source models on these flags, fine-tune them on the fold subsets to obtain
# the ground truth, and score every candidate source with the transferability metrics.

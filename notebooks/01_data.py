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
# package records (and, where that differs, against the release's content), shows what the images look like, how the classes are distributed over the official
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

from helpers import booktext
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
# Each flag is read from `<data root>/medmnist/` with one call, the one to copy into your own code:

# %%
d = D.load_medmnist(flags[0], size=size, root=data_root)
print(d.flag, d.task, d.class_names, {s: len(d.labels[s]) for s in D.SPLITS}, d.provenance)

# %% [markdown]
# `images[split]` holds uint8 arrays, `labels[split]` int64 of shape (N, 1). The file's MD5 is compared with the
# one `medmnist.INFO` records. When it differs, the loader compares the decoded images and labels with the
# release (a recorded content hash, the split sizes and the label counts): a re-saved copy of the official
# content loads silently, since its results are comparable with the official split, while a subset or a
# modified copy loads with a warning that says which. Table 1 records the outcome per flag.

# %% tags=["hide-input"]
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
                   "provenance": d.provenance, "comparable": d.comparable, "official_md5": d.md5_ok,
                   "md5": d.md5, "file": d.path.name})
status = pd.DataFrame(status).set_index("flag")
not_comparable = [f for f in flags if not datasets[f].comparable]
booktext.glue(n_flags=len(flags), not_comparable=", ".join(not_comparable) or "none",
              per_class=per_class, image_size=cfg["data"]["image_size"])
status.drop(columns=["md5", "file"])

# %% [markdown]
# **Table 1.** Per flag: the task type and number of classes that `medmnist.INFO` gives, the size of each split
# as found in the file, and the file's provenance: `official` (the MD5 is the release's), `official content,
# re-saved` (another MD5, the release's images and labels), `subset` (fewer images than the release) or
# `modified` / `unverified`. Results are comparable with the official split only in the first two cases; here
# the flags that are not: {glue:text}`not_comparable`. Each file's MD5 is in `results/<profile>/data_files.csv`.

# %% [markdown]
# ## A look at the images

# %% tags=["hide-input"]
for flag, d in datasets.items():
    fig = viz.sample_grid(d, "train", per_class=per_class)
    plt.show()

# %% [markdown]
# **Figure 1.** {glue:text}`per_class` random training images per class of each flag (one panel per flag, titled
# with it), one row per class, the class id and name at the left.
#
# Training sees these images through [D]'s augmentation: horizontal flip, random resized crop, a small
# rotation, sharpness, autocontrast and histogram equalisation. Here they run as batched tensor operations on
# the device that holds the data set (the GPU when there is one), never image by image through PIL.

# %% tags=["hide-input"]
for flag, d in datasets.items():
    viz.augmentation_grid(d, image_size=cfg["data"]["image_size"])
    plt.show()

# %% [markdown]
# **Figure 2.** Four training images of each flag, resized to the profile's {glue:text}`image_size` px model input
# (left column), and six augmented views of each, as `helpers.data.TensorImageDataset` produces them for
# training.

# %% [markdown]
# ## Class balance per split

# %% tags=["hide-input"]
counts = pd.concat([D.class_count_table(d) for d in datasets.values()], ignore_index=True)
for flag in datasets:
    viz.class_count_bars(counts, flag)
    plt.show()
counts.pivot_table(index=["flag", "class_id", "class_name"], columns="split", values="count").astype(int)

# %% [markdown]
# **Figure 3 and Table 2.** Images per class in the train, val and test splits of each flag: one bar chart per
# flag, and the same counts as a table with one row per class. Strong imbalance (for example pneumonia against
# normal) is the reason the ground truth is measured with AUC rather than accuracy.

# %% [markdown]
# ## The fold subsets of [D]
# [D] fine-tunes each target on five small subsets drawn once with `np.random.seed(24)`: for every fold,
# `n_classes * 100` training images and `n_classes * 25` validation images (the whole validation split when it
# is smaller), always testing on the whole official test split. Transferability scores use fold 1's training
# subset. `helpers.data.paper_fold_indices` reproduces that random stream exactly; `helpers.data.fold_table`
# tabulates it:

# %%
fold_tables = pd.concat([D.fold_table(d, folds=5, seed=cfg["data"]["fold_seed"]) for d in datasets.values()],
                        ignore_index=True)

# %% tags=["hide-input"]
for flag in datasets:
    viz.fold_sizes_plot(fold_tables, flag)
    plt.show()
fold_sizes = (fold_tables.groupby(["flag", "fold", "split"])["subset_size"].first()
              .unstack("split")[["train", "val", "test"]])
fold_sizes

# %% [markdown]
# **Figure 4 and Table 3.** Size of the train and val subsets of each of the five folds, one chart per flag, and
# as a table: one row per fold of one flag, with the whole test split. Where the validation split is smaller than
# `n_classes * 25` (retinamnist: 120 < 125) every fold shares the whole validation split; otherwise each fold
# draws its own.

# %% tags=["hide-input"]
fold1 = fold_tables[(fold_tables["fold"] == 1) & (fold_tables["split"] == "train")]
fold1.pivot_table(index="flag", columns="class_id", values="count", fill_value=0)

# %% [markdown]
# **Table 4.** Class counts within fold 1's training subset, the set every transferability metric in this book
# is computed on. The draw is not stratified, so it follows the class balance of the full training split.

# %% tags=["hide-input"]
out = results_root(cfg["name"])
atomic_write_csv(status.reset_index(), out / "data_files.csv")
atomic_write_csv(counts, out / "data_class_counts.csv")
atomic_write_csv(fold_tables, out / "data_folds.csv")
print("wrote", sorted(p.name for p in out.glob("data_*.csv")))

# %% [markdown]
# ## Summary
# - The profile's flags load from the data root; a file whose content differs from the official release (a
#   subset, a modified copy) says so, while a re-saved copy of the official content loads silently.
# - The fold subsets of [D] are small (hundreds of images), the regime in which transferability estimation
#   matters most.
# - The tables behind every figure are written to `results/<profile>/data_*.csv`.
#
# ## What's next
# The following chapters train the source models on these flags, fine-tune them on the fold subsets to obtain
# the ground truth, and score every candidate source with the transferability metrics.

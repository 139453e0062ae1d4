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
# # Fine-tuning: the ground truth
#
# ## Overview
# A transferability score is only as good as its agreement with what fine-tuning actually achieves. This
# chapter measures that ground truth with the protocol of [D] {cite}`juodelyte2024dataset`: every available
# source is fine-tuned on every target's fold subsets over a hyperparameter sweep, and the ground truth of a
# (source, target) pair is the test AUC of the run with the lowest validation loss.
#
# 1. The sweep
# 2. Running the fine-tuning units
# 3. Selecting runs: the lowest validation loss
# 4. The ground-truth table and per-target AUC
# 5. How much the ground truth moves between seeds
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | [Pretraining chapter](02_pretraining) | Necessary | the source checkpoints |
# | ROC AUC | Necessary | MedMNIST's definitions (binary, multi-class one-vs-rest, multi-label mean) |
#
# - **Time to run**: a few minutes on the quick profile (2-core CPU).

# %% tags=["parameters", "hide-input"]
profile = "quick"   # profile name (profiles/<name>.yml) or path to a profile file
data_root = None    # None: $DATA_ROOT, else data/
device = None       # None: the profile's device (auto: cuda when present)
group_size = None   # configs of one (source, target, fold) advanced together; None: all of them

# %% [markdown]
# ## Imports

# %% tags=["hide-input"]
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from helpers.stages import finetuning as F
from helpers.paths import results_root
from helpers.profiles import finetune_grid, load_profile, profile_flags, profile_targets, resolve_device

# %% tags=["hide-input"]
cfg = load_profile(profile)
flags = profile_flags(cfg, data_root)
targets = profile_targets(cfg, data_root)
sources = cfg["sources"]["dataset"]
device = device or resolve_device(cfg)
out = results_root(cfg["name"])
print(f"profile {cfg['name']!r}: sources {sources}, targets {targets}, device {device}")

# %% [markdown]
# ## The sweep
# [D]'s recipe: the source's classifier is replaced by Dropout(0.5) + Linear, no layer is frozen, SGD (with
# Nesterov momentum when momentum > 0) and cosine annealing over the epoch budget, cross-entropy loss, the
# training augmentation of PROTOCOL section 4, early stopping on validation AUC and the checkpoint with the best
# validation AUC kept and tested on the whole official test split.

# %% tags=["hide-input"]
ft = cfg["finetuning"]
grid = pd.DataFrame([{"target": t, "configs": len(finetune_grid(cfg, t)), **{k: sorted({g[k] for g in finetune_grid(cfg, t)})
                                                                               for k in ("lr", "batch_size", "momentum", "weight_decay")}}
                     for t in targets]).set_index("target")
print(f"epochs {ft['epochs']}, patience {ft.get('patience')}, folds {cfg['data'].get('folds')}, "
      f"image size {ft.get('image_size', cfg['data']['image_size'])} px, "
      f"train images per fold {ft.get('max_train_images') or 'all of the subset'}")
grid

# %% [markdown]
# One row per target: the number of sweep configurations and the values of each hyperparameter. The paper
# profile sweeps 120 configurations for 200 epochs with patience 50; the quick profile keeps a real but
# reduced sweep (two learning rates, a few epochs, the first images of fold 1's training subset) so that the
# chapter runs on a CPU.

# %% [markdown]
# ## Running the fine-tuning units
# Each (source, target, fold, hyperparameters) is one unit of work, stored once finished and never recomputed.
# The configurations of one (source, target, fold) advance together on the device: they share each augmented
# batch, and on a GPU each issues its kernels on its own CUDA stream, which keeps a large GPU busy with many
# small fine-tuning runs. The same units run from the command line, `python -m helpers.run finetuning --profile
# <name>`, on one machine or a Ray cluster (`--engine ray`); when they are stored already, this chapter only reads
# them.

# %%
runs, unavailable = F.run_finetuning(cfg, sources, targets, out, root=data_root, device=device,
                                     group_size=group_size, progress=False)
table = runs[F.RUN_COLUMNS].sort_values(["target", "source", "lr", "batch_size"]).reset_index(drop=True)
table.round(3)

# %% [markdown]
# One row per fine-tuning run: the source, target, fold and hyperparameters, the epochs that ran and the epoch
# whose checkpoint was kept (best validation AUC), validation and test AUC, accuracy and loss of that
# checkpoint, and the seconds the run took (its share of its group's time). All runs are written to
# `results/<profile>/finetuning.csv`.

# %% tags=["hide-input"]
unavailable_pairs = (unavailable.groupby("source").agg(targets=("target", lambda s: ", ".join(sorted(set(s)))),
                                                       reason=("reason", "first"))
                     if not unavailable.empty else pd.DataFrame(columns=["targets", "reason"]))
unavailable_pairs

# %% [markdown]
# Sources that could not be fine-tuned here, with the reason (for example ImageNet weights, which cannot be
# downloaded offline). They are left out of the ground truth rather than stopping the book.

# %% [markdown]
# ## Selecting runs: the lowest validation loss
# For each (source, target, fold), [D] takes the run with the lowest validation loss as the ground truth. When
# the profile repeats the sweep over several seeds (`finetuning.seeds`, this project's extension), the
# selection is made per seed. The figure shows every run's validation loss against its test AUC, the selected
# runs circled.

# %% tags=["hide-input"]
selected = F.select_runs(runs)
fig, axes = plt.subplots(1, len(targets), figsize=(3.6 * len(targets), 3.2), squeeze=False)
for ax, t in zip(axes[0], targets):
    sub, sel = runs[runs["target"] == t], selected[selected["target"] == t]
    sns.scatterplot(data=sub, x="val_loss", y="test_auc", hue="source", style="lr", ax=ax, s=40, legend=ax is axes[0, -1])
    ax.scatter(sel["val_loss"], sel["test_auc"], s=160, facecolors="none", edgecolors="k")
    ax.set_title(t)
if axes[0, -1].get_legend():
    sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1, 1), fontsize=7)
fig.tight_layout()
plt.show()
display(Markdown("*Figure: validation loss against test AUC of every fine-tuning run, one panel per target, "
                 "colour = source, marker = learning rate; circled: the run selected for each source (lowest "
                 "validation loss).*"))

# %% [markdown]
# ## The ground-truth table and per-target AUC

# %% tags=["hide-input"]
truth = F.ground_truth_table(runs)
path = F.write_ground_truth(runs, out)
print("wrote", path)
truth.round(3)

# %% [markdown]
# The ground truth: one row per source, one column per target, each cell the test AUC of the selected run on
# **fold 1**. That is [D]'s ground truth: its `fine-tuning.py` reads the fold-1 subsets only. Running the other
# four folds and averaging is this project's extension; the paper profile (5 folds) writes both, the fold-1
# table to `ground_truth.csv` (what the scores are correlated with, as in [D]) and the mean over folds to
# `ground_truth_mean.csv`, with the SD per cell in `ground_truth_folds.csv`. The diagonal (a source fine-tuned
# on its own flag) is kept here and left out when correlating.

# %% tags=["hide-input"]
folds_table = F.ground_truth_folds(runs)
n_folds = int(folds_table["n_folds"].max()) if len(folds_table) else 0
display(Markdown(f"This profile ran **{n_folds} fold(s)**: " + (
    "the mean over folds equals the fold-1 table here." if n_folds == 1 else
    f"the mean over folds differs from fold 1 by up to "
    f"{(folds_table['mean'] - folds_table['fold1']).abs().max():.3f} AUC; median SD over folds "
    f"{folds_table['sd'].median():.3f}.")))

# %% tags=["hide-input"]
seeds = F.ground_truth_seeds(runs)
spread = seeds.groupby(["target", "source"])["test_auc"].agg(["mean", "std", "size"]).reset_index()
fig, axes = plt.subplots(1, len(targets), figsize=(3.6 * len(targets), 3.0), squeeze=False, sharey=True)
for ax, t in zip(axes[0], targets):
    sub = spread[spread["target"] == t].sort_values("mean", ascending=False)
    colors = ["tab:gray" if s == t else "tab:blue" for s in sub["source"]]
    ax.bar(sub["source"], sub["mean"], color=colors, yerr=sub["std"].fillna(0), capsize=2)
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set_title(t)
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", rotation=60, labelsize=8)
axes[0, 0].set_ylabel("test AUC (selected run)")
fig.tight_layout()
plt.show()
n_seeds = int(spread["size"].max())
display(Markdown(f"*Figure: ground-truth test AUC of each source (mean over {n_seeds} seed(s); bars: SD over "
                 "seeds), one panel per target, sources sorted by AUC; grey: the target's own flag as source "
                 "(excluded when correlating), dotted line: chance.*"))

# %% tags=["hide-input"]
first_seed = selected[selected["seed"] == selected["seed"].min()] if "seed" in selected else selected
best_by_target = (first_seed[first_seed["source"] != first_seed["target"]].sort_values("test_auc", ascending=False)
                  .groupby("target").head(1)[["target", "source", "test_auc", "lr", "batch_size", "momentum",
                                              "weight_decay", "best_epoch"]].set_index("target"))
best_by_target.round(3)

# %% [markdown]
# Per target, the best source under the first seed (the target's own flag excluded) and the hyperparameters of
# its selected run: what an oracle would have picked, which the transferability scores try to predict without
# fine-tuning.

# %% [markdown]
# ## How much the ground truth moves between seeds
# [D] fine-tuned each configuration once, so its ground truth carries the noise of one training run. Here the
# whole sweep is repeated with different seeds (head initialisation, dropout and batch order), the run selected
# per seed, and the ranking of the sources compared between seeds: the weighted τ between two seeds' rankings
# says how well a *perfect* predictor of one seed's ground truth could agree with another's. A metric cannot be
# expected to agree with the ground truth better than the ground truth agrees with itself.

# %% tags=["hide-input"]
from itertools import combinations

from scipy.stats import weightedtau

rows = []
for t, g in seeds.groupby("target"):
    g = g[g["source"] != t]  # the target's own source is no candidate
    wide = g.pivot_table(index="source", columns="seed", values="test_auc")
    for a, b in combinations(wide.columns, 2):
        ok = wide[[a, b]].dropna()
        rows.append({"target": t, "seed_a": a, "seed_b": b, "sources": len(ok),
                     "weighted_tau": weightedtau(ok[a], ok[b])[0],
                     "same_best": ok[a].idxmax() == ok[b].idxmax()})
between = pd.DataFrame(rows)
if len(between):
    display(between.groupby("target").agg(pairs=("weighted_tau", "size"), sources=("sources", "max"),
                                          tau_mean=("weighted_tau", "mean"), tau_min=("weighted_tau", "min"),
                                          same_best=("same_best", "mean")).round(3))
    display(Markdown(f"**Table.** Per target, the weighted τ between the source rankings of two seeds (mean and "
                     f"minimum over the {int(between.groupby('target').size().max())} pairs of seeds) and how "
                     f"often two seeds agree on the best source. Over all targets the mean is "
                     f"{between['weighted_tau'].mean():.2f}; the median SD of a source's AUC over seeds is "
                     f"{spread['std'].median():.3f}, against a median gap of "
                     f"{spread.groupby('target')['mean'].apply(lambda v: v.sort_values().diff().median()).median():.3f}"
                     " between neighbouring sources. The Which-metric-to-trust chapter turns this into a noise "
                     "ceiling for the metrics."))
else:
    display(Markdown("One seed only: the spread between seeds is not measured on this profile."))

# %% [markdown]
# ## Summary
# - Every available source is fine-tuned on every target with [D]'s recipe and sweep; the runs are stored one
#   per unit (`results/<profile>/finetuning.csv`) and resume after an interruption.
# - The ground truth is the test AUC of the lowest-validation-loss run on fold 1 as in [D], written to
#   `results/<profile>/ground_truth.csv` (wide) and `ground_truth_runs.csv` (the selected runs); the mean and SD
#   over folds, this project's extension, go to `ground_truth_mean.csv` and `ground_truth_folds.csv`.
# - The sweep repeated over seeds shows how much the ground truth itself moves (`ground_truth_seeds.csv`).
# - On the quick profile the sweep is tiny and the training short, so the AUCs are far below [D]'s; the
#   paper profile runs the full protocol on a GPU.
#
# ## What's next
# The scoring chapters compute transferability scores for the same sources and targets, and the evaluation
# chapter correlates them with this ground truth.

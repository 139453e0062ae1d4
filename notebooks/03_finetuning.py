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
# 6. How reliable is this ground truth? (split-half over seeds, one-seed reliability, seeds needed; [D]'s sweep,
#    [R]'s folds)
# 7. The wash-out: training length, data size and the spread between sources; the quick profile's protocol,
#    chosen by reliability per CPU minute and checked on fresh seeds
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | [Pretraining chapter](02_pretraining) | Necessary | the source checkpoints |
# | ROC AUC | Necessary | MedMNIST's definitions (binary, multi-class one-vs-rest, multi-label mean) |
#
# - **Time to run**: about 13 minutes on the quick profile (2-core CPU, two tasks at once): twelve seeds of
#   one short fine-tuning per (source, target), the price of a ground truth reliable enough to judge metrics by.

# %% tags=["parameters", "hide-input"]
profile = "quick"   # profile name (profiles/<name>.yml) or path to a profile file
data_root = None    # None: $DATA_ROOT, else data/
device = None       # None: the profile's device (auto: cuda when present)
group_size = None   # configs of one (source, target, fold) advanced together; None: all of them
engine = None       # None: the profile's (finetuning.side_by_side tasks at once); "local" or "ray" to choose
reliability_level = 0.8  # the reliability a ground truth should reach (seeds needed are computed for it)
required_mean = 0.8  # issue 23's rule for the ground truth (the mean over seeds): split-half reliability at least
required_each = 0.6  # required_mean on average over the targets and required_each on every target
n_boot = 2000       # bootstrap resamplings of the sources for the one-seed reliability's interval

# %% [markdown]
# ## Imports

# %% tags=["hide-input"]
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from helpers import booktext
from helpers import reliability as REL
from helpers import viz
from helpers.stages import finetuning as F
from helpers.paths import PROJECT_ROOT, results_root
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
booktext.glue(ft_profile=cfg["name"], ft_epochs=ft["epochs"], ft_patience=str(ft.get("patience")),
              ft_folds=str(cfg["data"].get("folds")), ft_image_size=ft["image_size"],
              ft_train_images=str(ft.get("max_train_images") or "all of the subset"))
grid

# %% [markdown]
# **Table 1.** One row per target: the number of sweep configurations and the values of each hyperparameter.
# Profile {glue:text}`ft_profile` fine-tunes for {glue:text}`ft_epochs` epochs (patience
# {glue:text}`ft_patience`) on folds {glue:text}`ft_folds`, at {glue:text}`ft_image_size` px, with
# {glue:text}`ft_train_images` training images per fold. The paper profile sweeps 120 configurations for 200
# epochs with patience 50; the quick profile fine-tunes with one learning rate for a few epochs on fold 1's
# training subset, repeated over seeds: the protocol its reliability chose (section "The quick profile's
# protocol" below), so that the chapter runs on a CPU and its ground truth still ranks the sources.

# %% [markdown]
# ## Running the fine-tuning units
# Each (source, target, fold, hyperparameters) is one unit of work, stored once finished and never recomputed.
# The configurations of one (source, target, fold) advance together on the device: they share each augmented
# batch, and on a GPU each issues its kernels on its own CUDA stream, which keeps a large GPU busy with many
# small fine-tuning runs. The same units run from the command line, `python -m helpers.run finetuning --profile
# <name>`, on one machine or a Ray cluster (`--engine ray`); when they are stored already, this chapter only reads
# them. The quick profile runs two (source, target) tasks at once on a local Ray cluster
# (`finetuning.side_by_side: 2`): each task keeps its own two torch threads, which is what CPU results depend
# on, so the table is the same as one task at a time and only arrives sooner (`benchmarks/side_by_side.py`
# measures both and compares every AUC).

# %%
runs, unavailable = F.run_finetuning(cfg, sources, targets, out, root=data_root, device=device,
                                     group_size=group_size, progress=False, engine=engine)
table = runs[F.RUN_COLUMNS].sort_values(["target", "source", "lr", "batch_size"]).reset_index(drop=True)
booktext.table(table)

# %% [markdown]
# **Table 2.** One row per fine-tuning run: the source, target, fold and hyperparameters, the epochs that ran and the epoch
# whose checkpoint was kept (best validation AUC), validation and test AUC, accuracy and loss of that
# checkpoint, and the seconds the run took (its share of its group's wall time; with two tasks at once, as on
# the quick profile, each task's time includes sharing the CPU with the other, so the seconds add up to more
# than the chapter took). All runs are written to `results/<profile>/finetuning.csv`.

# %% tags=["hide-input"]
unavailable_pairs = (unavailable.groupby("source").agg(targets=("target", lambda s: ", ".join(sorted(set(s)))),
                                                       reason=("reason", "first"))
                     if not unavailable.empty else pd.DataFrame(columns=["targets", "reason"]))
unavailable_pairs

# %% [markdown]
# **Table 3.** Sources that could not be fine-tuned here, with the reason (for example ImageNet weights, which cannot be
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

# %% [markdown]
# **Figure 1.** Validation loss against test AUC of every fine-tuning run, one panel per target, colour =
# source, marker = learning rate; circled: the run selected for each source (lowest validation loss).

# %% [markdown]
# ## The ground-truth table and per-target AUC

# %% tags=["hide-input"]
truth = F.ground_truth_table(runs)
path = F.write_ground_truth(runs, out)
print("wrote", path)
truth.round(3)

# %% [markdown]
# **Table 4.** The ground truth: one row per source, one column per target, each cell the test AUC of the selected run on
# **fold 1**. That is [D]'s ground truth: its `fine-tuning.py` reads the fold-1 subsets only. Running the other
# four folds and averaging is this project's extension; the paper profile (5 folds) writes both, the fold-1
# table to `ground_truth.csv` (what the scores are correlated with, as in [D]) and the mean over folds to
# `ground_truth_mean.csv`, with the SD per cell in `ground_truth_folds.csv`. The diagonal (a source fine-tuned
# on its own flag) is left out when correlating; the quick profile does not fine-tune it at all
# (`finetuning.self_source: false`), which pays for part of its seeds.

# %% tags=["hide-input"]
folds_table = F.ground_truth_folds(runs)
n_folds = int(folds_table["n_folds"].max()) if len(folds_table) else 0
booktext.glue(n_folds=n_folds, folds_effect=(
    "the mean over folds equals the fold-1 table here" if n_folds == 1 else
    f"the mean over folds differs from fold 1 by up to {(folds_table['mean'] - folds_table['fold1']).abs().max():.3f} "
    f"AUC; median SD over folds {folds_table['sd'].median():.3f}"))

# %% [markdown]
# This profile ran **{glue:text}`n_folds` fold(s)**: {glue:text}`folds_effect`.

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
booktext.glue(n_seeds=n_seeds)

# %% [markdown]
# **Figure 2.** Ground-truth test AUC of each source (mean over {glue:text}`n_seeds` seed(s); bars: SD over
# seeds), one panel per target, sources sorted by AUC; grey: the target's own flag as source, where the
# profile fine-tunes it (excluded when correlating), dotted line: chance.

# %% tags=["hide-input"]
first_seed = selected[selected["seed"] == selected["seed"].min()] if "seed" in selected else selected
best_by_target = (first_seed[first_seed["source"] != first_seed["target"]].sort_values("test_auc", ascending=False)
                  .groupby("target").head(1)[["target", "source", "test_auc", "lr", "batch_size", "momentum",
                                              "weight_decay", "best_epoch"]].set_index("target"))
best_by_target.round(3)

# %% [markdown]
# **Table 5.** Per target, the best source under the first seed (the target's own flag excluded) and the hyperparameters of
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
    booktext.glue(seed_pairs=int(between.groupby("target").size().max()),
                  seed_tau=f"{between['weighted_tau'].mean():.2f}", seed_sd=f"{spread['std'].median():.3f}",
                  seed_gap=f"{spread.groupby('target')['mean'].apply(lambda v: v.sort_values().diff().median()).median():.3f}")
else:
    print("One seed only: the spread between seeds is not measured on this profile.")
    booktext.glue(seed_pairs=0, seed_tau="—", seed_sd="—", seed_gap="—")

# %% [markdown]
# **Table 6.** Per target, the weighted τ between the source rankings of two seeds (mean and minimum over the
# {glue:text}`seed_pairs` pairs of seeds) and how often two seeds agree on the best source. Over all targets the
# mean is {glue:text}`seed_tau`; the median SD of a source's AUC over seeds is {glue:text}`seed_sd`, against a
# median gap of {glue:text}`seed_gap` between neighbouring sources. The Which-metric-to-trust chapter turns this
# into a noise ceiling for the metrics.

# %% [markdown]
# ## How reliable is this ground truth?
# The weighted τ above compares two *single-seed* ground truths. What the metrics are judged against is the
# **mean over the seeds** that ran, which is steadier, and how much steadier is measured the way a test score's
# reliability is (`helpers.reliability`, the target's own source left out):
#
# - **split-half**: the seeds are split into two halves, each half's mean AUC per source computed, and the two
#   correlated (Pearson) over the sources; averaged over every balanced split and stepped up to the whole set of
#   seeds with the Spearman-Brown formula $2r/(1+r)$;
# - **one-seed reliability** $r_1$: the intraclass correlation ICC(3,1) over (source x seed), the share of the
#   variance of one run that is the source's and not the seed's (a seed that shifts every source alike costs
#   nothing), with a 90 % interval from resampling the sources;
# - **seeds needed** for a reliability of `reliability_level`: the Spearman-Brown prophecy solved for the
#   number of seeds, $\lceil L(1-r_1)/(r_1(1-L)) \rceil$.
#
# A reliability $R$ caps the correlation that *any* score can reach with this ground truth at about $\sqrt{R}$.

# %%
own = seeds.rename(columns={"seed": "replicate", "test_auc": "value"})
n_own = own["replicate"].nunique()
# the targets with at least 3 candidate sources (a ranking needs them)
own_rel, n_candidates = REL.measurable_summary(own, level=reliability_level, n_boot=n_boot, seed=0)
measurable = n_candidates[n_candidates >= 3].index
if own_rel is not None:
    display(booktext.table(own_rel))

# %% tags=["hide-input"]
if (n_candidates < 3).any():
    print("Targets with fewer than 3 candidate sources here, not measured: "
          + ", ".join(f"{t} ({n})" for t, n in n_candidates[n_candidates < 3].items()))
booktext.glue(n_own=n_own, reliability_level=reliability_level, required_mean=required_mean,
              required_each=required_each)
if own_rel is not None:
    last, per_target_rel = own_rel.iloc[-1], own_rel.iloc[:-1]
    own_split = per_target_rel.set_index("target")["split_half"]
    own_ok = REL.rule_verdict(own_split, required_mean, required_each)
    booktext.glue(own_split_mean=f"{own_split.mean():.2f}", own_split_min=f"{own_split.min():.2f}",
                  own_split_min_target=own_split.idxmin(),
                  own_split_per_target=", ".join(f"{t} {v:.2f}" for t, v in own_split.items()),
                  own_rule="meets" if own_ok else "does not meet")
    booktext.glue(own_half=int(last["n_split"]) // 2, own_r1=f"{last['r1']:.2f}", own_r1_low=f"{last['r1_low']:.2f}",
                  own_r1_high=f"{last['r1_high']:.2f}", own_now=f"{last['reliability_now']:.2f}",
                  own_needed=REL.replicates_text(last["needed"]),
                  own_worst=per_target_rel.sort_values("r1").iloc[0]["target"],
                  own_worst_needed=REL.replicates_text(per_target_rel["needed"].max()))
else:
    print("One seed only, or too few candidate sources: the reliability of this ground truth cannot be measured "
          "here (it needs two seeds or more, `finetuning.seeds`, and 3 sources).")
    booktext.glue(own_half="—", own_r1="—", own_r1_low="—", own_r1_high="—", own_now="—", own_needed="—",
                  own_worst="—", own_worst_needed="—", own_split_mean="—", own_split_min="—",
                  own_split_min_target="—", own_split_per_target="—", own_rule="cannot be checked against")

# %% [markdown]
# **Table 7.** Reliability of this profile's ground truth (the mean over its {glue:text}`n_own` seeds), per target
# and over all targets: `split_half` is the split-half reliability of a mean of `n_split` seeds (halves of
# {glue:text}`own_half` seed(s) each), `r1` the one-seed reliability with its 90 % interval (`r1_low`,
# `r1_high`), `reliability_now` that value stepped up to the {glue:text}`n_own` seeds that ran, and `needed` the
# seeds for a reliability of {glue:text}`reliability_level`. Over all targets one seed has a reliability of
# {glue:text}`own_r1` ({glue:text}`own_r1_low` to {glue:text}`own_r1_high`), the mean of the {glue:text}`n_own`
# seeds about {glue:text}`own_now`, and {glue:text}`own_needed` seeds would be needed for
# {glue:text}`reliability_level`; the least reliable target ({glue:text}`own_worst`) needs
# {glue:text}`own_worst_needed` seeds.
#
# **The ground truth the other chapters use**, the mean over the {glue:text}`n_own` seeds, has a split-half
# reliability of {glue:text}`own_split_mean` on average over the targets ({glue:text}`own_split_per_target`;
# lowest {glue:text}`own_split_min`, {glue:text}`own_split_min_target`). This run therefore
# **{glue:text}`own_rule`** the rule this book sets its own benchmark (at least {glue:text}`required_mean` on
# average, at least {glue:text}`required_each` on every target): the reliability is measured on each run, not
# assumed from the study that chose the protocol. Any score's correlation with this ground truth is capped at
# about the square root of these values.

# %% tags=["hide-input"]
if own_rel is not None:
    fig = viz.reliability_plot(own_rel, n_own, reliability_level)
    plt.show()
else:
    print("No reliability measured on this profile: no figure.")

# %% [markdown]
# **Figure 3.** Left, per target and over all targets, the one-seed reliability (ICC(3,1), 90 % interval from
# resampling sources) and the split-half reliability of the mean over the seeds that ran; right, the
# Spearman-Brown prophecy: the reliability of a mean of k seeds from each target's one-seed reliability; dashed:
# the {glue:text}`n_own` seed(s) this profile runs, dotted: the level {glue:text}`reliability_level`.

# %% [markdown]
# When the profile runs several folds (the paper profile runs [D]'s folds), each fold is another replicate of the
# same comparison (another training subset as well as another seed), and the same measurement applies to the
# mean over folds.

# %% tags=["hide-input"]
sel_all = F.select_runs(runs)
by_fold = (sel_all.groupby(["target", "source", "fold"])["test_auc"].mean().reset_index()
           .rename(columns={"fold": "replicate", "test_auc": "value"}))
by_fold = by_fold[by_fold["target"].isin(measurable)]
n_fold_reps = by_fold["replicate"].nunique()
booktext.glue(n_fold_reps=n_fold_reps)
if n_fold_reps >= 2:
    fold_rel = REL.reliability_summary(by_fold, level=reliability_level, n_boot=n_boot, seed=0)
    display(booktext.table(fold_rel))
else:
    print("This profile runs one fold: no reliability over folds here (the paper profile runs several).")

# %% [markdown]
# **Table 8** (profiles with several folds). Reliability over the {glue:text}`n_fold_reps` fold(s) (each fold's
# value the mean over its seeds), columns as in Table 7 with folds in place of seeds.

# %% [markdown]
# ### [D]'s ground truth
# [D] ran each configuration of its sweep once per (source, target) and published every run
# (`data/reference/dovile2024/finetuned_AUCs`), so there are no repeated seeds to measure. The sweep still holds
# near-replicates: each of its weight decays comes with the whole grid of learning rate, batch size and
# momentum. Selecting by [D]'s rule (lowest validation loss) *within* each weight decay gives one sub-sweep
# ground truth per weight decay and (source, target), whose agreement measures how much [D]'s selected AUC moves
# between equivalent-looking sweeps (training noise and the weight decay together). [D]'s published ground truth
# is one such selection (over the whole sweep), so the one-replicate reliability `r1` is the closer guide to its
# reliability than the split-half of a mean, which [D] never formed.

# %% tags=["hide-input"]
from helpers import reference as ref_d

d_runs = ref_d.load_runs("dataset")
d_rep = REL.subsweep_replicates(d_runs, "wd")
d_configs = int(d_runs.groupby(["target", "source"]).size().median())
d_wd = sorted(d_rep["replicate"].unique())
d_rel = REL.reliability_summary(d_rep, level=reliability_level, n_boot=n_boot, seed=0)
display(booktext.table(d_rel))
d_last, d_per = d_rel.iloc[-1], d_rel.iloc[:-1].sort_values("r1")
booktext.glue(d_targets=d_rep["target"].nunique(), d_sources=int(d_rel["sources"].iloc[0]), d_configs=d_configs,
              d_n_wd=len(d_wd), d_wd=", ".join(f"{x:g}" for x in d_wd), d_r1=float(d_last["r1"]),
              d_r1_low=float(d_last["r1_low"]), d_r1_high=float(d_last["r1_high"]), d_r1_min=float(d_per["r1"].min()),
              d_r1_min_target=d_per.iloc[0]["target"], d_r1_max=float(d_per["r1"].max()),
              d_r1_max_target=d_per.iloc[-1]["target"], d_runs_per_replicate=d_configs // len(d_wd))

# %% [markdown]
# **Table 9.** [D]'s dataset-transferability sweep, {glue:text}`d_targets` targets x {glue:text}`d_sources`
# sources, {glue:text}`d_configs` configurations per (source, target) (median), the {glue:text}`d_n_wd`
# weight-decay sub-sweeps ({glue:text}`d_wd`) as replicates (columns as in Table 7). One sub-sweep's selection
# has a reliability of {glue:text}`d_r1:.2f` ({glue:text}`d_r1_low:.2f` to {glue:text}`d_r1_high:.2f`) over all
# targets, from {glue:text}`d_r1_min:.2f` ({glue:text}`d_r1_min_target`) to {glue:text}`d_r1_max:.2f`
# ({glue:text}`d_r1_max_target`); for comparison, one seed of this profile: {glue:text}`own_r1`. [D]'s
# replicates differ in weight decay as well as in training noise, and each is the best of about
# {glue:text}`d_runs_per_replicate` long runs on whole subsets, so the two numbers are not the same measurement.

# %% [markdown]
# ### A public benchmark with replicates: [R]'s folds
# [R] {cite}`juodelyte2023revisiting` published the test AUC of every fold (`data/reference/juodelyte2023/results/AUC.csv`):
# per target, a handful of candidates (ImageNet and RadImageNet weights, each fine-tuned whole or with frozen
# layers, and random initialisation), each fine-tuned on every fold. The folds are replicates of the same
# comparison, so the same measurement applies, over few candidates (the intervals are wide).

# %% tags=["hide-input"]
r_auc = pd.read_csv(PROJECT_ROOT / "data" / "reference" / "juodelyte2023" / "results" / "AUC.csv")
r_tidy = pd.DataFrame({"target": r_auc["target"], "source": r_auc["source"] + " " + r_auc["freeze"],
                       "replicate": r_auc["fold"], "value": r_auc["AUC"]})
r_rel = REL.reliability_summary(r_tidy, level=reliability_level, n_boot=n_boot, seed=0)
display(booktext.table(r_rel))
r_per, r_last = r_rel.iloc[:-1].sort_values("split_half"), r_rel.iloc[-1]
booktext.glue(r_targets=r_tidy["target"].nunique(), r_candidates=int(r_rel["sources"].iloc[0]),
              r_folds=r_tidy["replicate"].nunique(), r_n_split=int(r_rel["n_split"].iloc[-1]),
              r_split_half=float(r_last["split_half"]), r_min=float(r_per.iloc[0]["split_half"]),
              r_min_target=r_per.iloc[0]["target"], r_max=float(r_per.iloc[-1]["split_half"]),
              r_max_target=r_per.iloc[-1]["target"], r_r1=float(r_last["r1"]), r_r1_low=float(r_last["r1_low"]),
              r_r1_high=float(r_last["r1_high"]))

# %% [markdown]
# **Table 10.** [R]'s benchmark, {glue:text}`r_targets` targets x {glue:text}`r_candidates` candidates x
# {glue:text}`r_folds` folds (columns as in Table 7, folds in place of seeds). The mean over
# {glue:text}`r_n_split` folds has a split-half reliability of {glue:text}`r_split_half:.2f` over all targets,
# from {glue:text}`r_min:.2f` ({glue:text}`r_min_target`) to {glue:text}`r_max:.2f` ({glue:text}`r_max_target`);
# one fold alone {glue:text}`r_r1:.2f` ({glue:text}`r_r1_low:.2f` to {glue:text}`r_r1_high:.2f`).

# %% [markdown]
# ## The wash-out: training length, data size and the spread between sources
# Which fine-tuning protocol gives a reliable ground truth for the least CPU time, and does it still measure the
# benefit of the source? The ground-truth-reliability study (`results/reference/ground_truth_reliability/`,
# its README says how it was run) fine-tuned the quick profile's candidate sources on its targets under several
# protocols with torch pinned to a fixed thread count (reruns bit-identical), with several seeds each: more
# training images (the whole fold-1 training subset instead of its first images), more epochs (with early
# stopping), and one learning rate instead of the quick sweep's two (the table lists each protocol's settings). Every statistic below is recomputed here
# from its per-seed tables; only the CPU minutes per seed are the study's measurement.
#
# Per protocol: the SD of the sources' true AUC (`source_sd`) against the SD of one run around it (`noise_sd`),
# both from the two-way decomposition behind ICC(3,1); the one-seed reliability and the seeds (and CPU minutes)
# needed for `reliability_level`; the split-half reliability of 4 seeds (2 against 2), which every protocol has;
# and, as a check of validity, the agreement (Pearson over sources, mean over targets) of the protocol's
# mean-over-seeds AUC with that of the fullest fine-tuning (`validity_reference`: the whole subset for 20
# epochs), raw and corrected for the unreliability of both means ($r / \sqrt{R_x R_y}$).

# %% tags=["hide-input"]
study = PROJECT_ROOT / "results" / "reference" / "ground_truth_reliability"
study_profiles = {"P1": "p1_today.yml", "P2": "p2_fullsub.yml", "P3": "p3_long.yml",
                  "P5": "p5_sub_long_lr001_s0123.yml"}   # the study's protocol names (its README)
validity_reference = "P5"
cost = REL.read_markdown_table(study / "reliability.md").set_index("protocol")
protocols = [p for p in cost.index if p != "P1-s012"]   # P1-s012: P1's first three seeds, not another protocol


def describe_protocol(protocol):
    base, _, fixed = protocol.partition("-")
    ft_p = load_profile(str(study / study_profiles[base]))["finetuning"]
    lrs = [float(fixed[2:])] if fixed.startswith("lr") else ft_p["grid"]["lr"]
    return {"train_images": ft_p["max_train_images"] or "whole fold-1 subset", "epochs": ft_p["epochs"],
            "lr": ", ".join(f"{x:g}" for x in lrs)}


study_tables = {p: REL.tidy_replicates(pd.read_csv(study / f"per_seed_{p}.csv")) for p in protocols}
rows, means = [], {}
for p, tidy in study_tables.items():
    vc = REL.variance_components(tidy)
    one = REL.one_seed_reliability(tidy, n_boot=n_boot, seed=0)
    cpu = float(cost.loc[p, "CPU min / seed"])
    need = REL.replicates_needed(one.overall, reliability_level)
    k = tidy["replicate"].nunique()
    means[p] = tidy.groupby(["target", "source"])["value"].mean()
    rows.append({"protocol": p, **describe_protocol(p), "seeds": k, "cpu_min_per_seed": cpu,
                 "source_sd": vc["source_sd"].mean(), "noise_sd": vc["noise_sd"].mean(),
                 "r1": one.overall, "r1_low": one.low, "r1_high": one.high,
                 "split_half_4": REL.split_half_reliability(tidy, half=2).overall,
                 "reliability_of_mean": REL.spearman_brown(max(one.overall, 0.0), k),
                 "seeds_needed": need, "cpu_min_needed": need * cpu})
washout = pd.DataFrame(rows).set_index("protocol")
ref_mean = means[validity_reference]
agree = {}
for p, m in means.items():
    both = pd.concat([m.rename("x"), ref_mean.rename("y")], axis=1).dropna()
    agree[p] = both.groupby(level="target").apply(lambda g: np.corrcoef(g["x"], g["y"])[0, 1]).mean()
washout["agreement"] = pd.Series(agree)
washout["agreement_corrected"] = washout["agreement"] / np.sqrt(
    washout["reliability_of_mean"] * washout.loc[validity_reference, "reliability_of_mean"])
washout.loc[validity_reference, ["agreement", "agreement_corrected"]] = np.nan   # itself: no check
washout.round(3)

# %% tags=["hide-input"]
w = washout
short, long_ = "P1", "P3"            # 128 images, both learning rates: 3 epochs against 20
sub3, sub20 = "P2-lr0.001", "P5"     # the whole subset, lr 0.001: 3 epochs against 20
cheapest = w["cpu_min_needed"].idxmin()
booktext.glue(
    study_targets=study_tables[short]["target"].nunique(),
    study_sources=int(study_tables[short].groupby("target")["source"].nunique().max()),
    validity_reference=validity_reference, short_epochs=int(w.loc[short, "epochs"]),
    long_epochs=int(w.loc[long_, "epochs"]), short_images=str(w.loc[short, "train_images"]),
    **{f"{name}_{col}": float(w.loc[p, col]) for name, p in
       (("short", short), ("long", long_), ("sub3", sub3), ("sub20", sub20))
       for col in ("noise_sd", "source_sd", "r1")},
    cost_ratio_short=float(w.loc[long_, "cpu_min_per_seed"] / w.loc[short, "cpu_min_per_seed"]),
    cost_ratio_sub=float(w.loc[sub20, "cpu_min_per_seed"] / w.loc[sub3, "cpu_min_per_seed"]),
    cheapest=cheapest, cheapest_images=str(w.loc[cheapest, "train_images"]),
    cheapest_epochs=int(w.loc[cheapest, "epochs"]), cheapest_lr=str(w.loc[cheapest, "lr"]),
    cheapest_seeds=REL.replicates_text(w.loc[cheapest, "seeds_needed"]),
    cheapest_cpu=float(w.loc[cheapest, "cpu_min_needed"]), p1_seeds=REL.replicates_text(w.loc["P1", "seeds_needed"]),
    p1_cpu=float(w.loc["P1", "cpu_min_needed"]), cheapest_agreement=float(w.loc[cheapest, "agreement"]),
    cheapest_agreement_corrected=float(w.loc[cheapest, "agreement_corrected"]))

# %% [markdown]
# **Table 11.** One row per protocol of the study: training images, epochs, learning rate(s), seeds run and the
# measured CPU minutes per seed (all {glue:text}`study_targets` targets x {glue:text}`study_sources` sources);
# `source_sd` and `noise_sd` (AUC, mean over targets); the one-seed reliability `r1` with its 90 % interval; the
# split-half reliability of 4 seeds; `reliability_of_mean` (`r1` stepped up to the seeds run); the seeds and CPU
# minutes needed for {glue:text}`reliability_level`; and the agreement with
# {glue:text}`validity_reference`'s ranking, raw and corrected.
#
# {glue:text}`long_epochs` epochs instead of {glue:text}`short_epochs` shrink the seed noise
# ({glue:text}`short_noise_sd:.3f` to {glue:text}`long_noise_sd:.3f` AUC on {glue:text}`short_images` images,
# {glue:text}`sub3_noise_sd:.3f` to {glue:text}`sub20_noise_sd:.3f` on the whole subset) but also the spread
# between the sources ({glue:text}`short_source_sd:.3f` to {glue:text}`long_source_sd:.3f`, and
# {glue:text}`sub3_source_sd:.3f` to {glue:text}`sub20_source_sd:.3f`): the benefit of the source washes out as
# the target's own training takes over, and the one-seed reliability does not follow the noise down (from
# {glue:text}`short_r1:.2f` to {glue:text}`long_r1:.2f` on {glue:text}`short_images` images, from
# {glue:text}`sub3_r1:.2f` to {glue:text}`sub20_r1:.2f` on the whole subset) while each seed costs
# {glue:text}`cost_ratio_short:.1f` and {glue:text}`cost_ratio_sub:.1f` times as much.
#
# The cheapest way to {glue:text}`reliability_level` is **{glue:text}`cheapest`** (training images:
# {glue:text}`cheapest_images`, {glue:text}`cheapest_epochs` epochs, lr {glue:text}`cheapest_lr`):
# {glue:text}`cheapest_seeds` seeds, about {glue:text}`cheapest_cpu:.0f` CPU minutes, against
# {glue:text}`p1_seeds` seeds and {glue:text}`p1_cpu:.0f` minutes for P1, the protocol of the quick profile when
# the study ran. Its ranking agrees with {glue:text}`validity_reference`'s at
# {glue:text}`cheapest_agreement:.2f` ({glue:text}`cheapest_agreement_corrected:.2f` corrected for the
# unreliability of both): reliability is not validity, since the cheapest reliable protocol is also the one
# that fine-tunes least.

# %% tags=["hide-input"]
order = sorted(protocols, key=lambda p: (w.loc[p, "epochs"], isinstance(w.loc[p, "train_images"], str), p))
xs = np.arange(len(order))
fig, axes = plt.subplots(2, 2, figsize=(12, 8))
axes = axes.ravel()
ax = axes[0]
ax.bar(xs - 0.2, w.loc[order, "source_sd"], 0.4, label="between sources (source_sd)")
ax.bar(xs + 0.2, w.loc[order, "noise_sd"], 0.4, label="one seed's noise (noise_sd)")
ax.set_ylabel("SD of test AUC")
ax.legend(fontsize=7)
ax = axes[1]
ax.errorbar(xs, w.loc[order, "r1"], yerr=[w.loc[order, "r1"] - w.loc[order, "r1_low"],
                                          w.loc[order, "r1_high"] - w.loc[order, "r1"]], fmt="o", capsize=3)
ax.set_ylabel("one-seed reliability (90 % interval)")
ax.axhline(0, color="k", lw=0.5)
ax = axes[2]
ax.bar(xs, w.loc[order, "cpu_min_needed"].replace(np.inf, np.nan), color="tab:gray")
ax.set_yscale("log")
ax.set_ylabel(f"CPU minutes for reliability {reliability_level}")
ax = axes[3]
ax.bar(xs - 0.2, w.loc[order, "agreement"], 0.4, label="raw")
ax.bar(xs + 0.2, w.loc[order, "agreement_corrected"], 0.4, label="corrected")
ax.set_ylabel(f"agreement with {validity_reference}")
ax.legend(fontsize=7)
for ax in axes:
    ax.set_xticks(xs, [f"{p}: {w.loc[p, 'epochs']} ep, "
                       f"{'subset' if w.loc[p, 'train_images'] == 'whole fold-1 subset' else w.loc[p, 'train_images']}"
                       f", lr {w.loc[p, 'lr']}" for p in order], fontsize=7, rotation=35, ha="right")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Figure 4.** The wash-out, one point or bar per protocol of the study, ordered by epochs and then training
# images (tick labels: protocol, epochs, training images, learning rates). Top left: the SD of the sources' AUC
# against the noise of one seed; top right: the one-seed reliability with its 90 % interval over sources; bottom
# left: the CPU minutes (study's measurement per seed x seeds needed) for a ground truth of reliability
# {glue:text}`reliability_level`, log scale; bottom right: the agreement of the protocol's mean-over-seeds
# ranking with the fullest fine-tuning ({glue:text}`validity_reference`, left empty), raw and corrected for
# unreliability ({glue:text}`validity_reference`'s seeds 0-3 are shared with the other protocols).

# %% [markdown]
# ### The quick profile's protocol: chosen by reliability per CPU minute, checked on fresh seeds
# The quick profile's fine-tuning is chosen by what a ground truth must be to judge metrics by: reliable enough
# (the rule of issue 23: the mean over n seeds reaches a split-half reliability of at least `required_mean` on
# average over the targets and `required_each` on every target), for the fewest CPU minutes (Table 11), and
# still measuring the benefit of the source (its agreement with the fullest fine-tuning, Table 11's last
# columns). The learning rate of the cheapest reliable protocol above was picked after seeing the study's
# numbers, on the same three targets, which flatters it. So it was run again on seeds the study never used
# (`per_seed_P2-lr0.001-fresh.csv`, made with `profiles/quick.yml`'s sources and targets and the fine-tuning
# section of `p2_fullsub.yml` with lr 0.001 only; the README there says how). The smallest n that meets the rule
# is the number of seeds the protocol needs. Split-half reliabilities are measured for every even n the fresh seeds allow (and for the fresh and
# the study's seeds pooled), and prophesied from each target's one-seed reliability for the others.

# %% tags=["hide-input"]
fresh_protocol = "P2-lr0.001"
fresh = REL.tidy_replicates(pd.read_csv(study / f"per_seed_{fresh_protocol}-fresh.csv"))
fresh_seeds = sorted(fresh["replicate"].unique(), key=int)
fresh_rel = REL.reliability_summary(fresh, level=reliability_level, n_boot=n_boot, seed=0)
measured = REL.split_half_by_size(fresh).pivot(index="n", columns="target", values="reliability")
per_target_cols = [c for c in measured.columns if c != "all targets"]
measured["mean over targets"] = measured[per_target_cols].mean(axis=1)
measured["min over targets"] = measured[per_target_cols].min(axis=1)
measured["meets the rule"] = (measured["mean over targets"] >= required_mean) & (
    measured["min over targets"] >= required_each)
r1_t = fresh_rel.iloc[:-1].set_index("target")["r1"]
prophecy = pd.DataFrame({n: REL.spearman_brown(r1_t.clip(lower=0).to_numpy(), n) for n in range(1, 61)},
                        index=r1_t.index).T
prophecy["mean over targets"] = prophecy[list(r1_t.index)].mean(axis=1)
prophecy["meets the rule"] = (prophecy["mean over targets"] >= required_mean) & (
    prophecy[list(r1_t.index)].min(axis=1) >= required_each)
n_measured = measured.index[measured["meets the rule"]].min() if measured["meets the rule"].any() else None
pooled = pd.concat([study_tables[fresh_protocol], fresh])
pooled_by_n = REL.split_half_by_size(pooled).pivot(index="n", columns="target", values="reliability")
pooled_max = pooled_by_n.loc[pooled_by_n.index.max()]
pooled_ok = REL.rule_verdict(pooled_max[per_target_cols], required_mean, required_each)
n_prophesied = prophecy.index[prophecy["meets the rule"]].min() if prophecy["meets the rule"].any() else None
display(booktext.table(fresh_rel))
display(measured.round(3))
fresh_ft = load_profile(str(study / "p2_lr001_fresh.yml"))["finetuning"]
same_protocol = all(ft.get(k) == fresh_ft.get(k) for k in ("image_size", "epochs", "patience", "max_train_images",
                                                            "grid"))
run_seeds = sorted(int(x) for x in ft.get("seeds", [0]))
pooled_seeds = sorted(int(x) for x in pooled["replicate"].unique())
validity_own = np.nan
if same_protocol:   # this run's mean-over-seeds ranking against the fullest fine-tuning's, as in Table 11
    own_mean = own.groupby(["target", "source"])["value"].mean()
    both = pd.concat([own_mean.rename("x"), ref_mean.rename("y")], axis=1).dropna()
    if len(both):
        validity_own = both.groupby(level="target").apply(lambda g: np.corrcoef(g["x"], g["y"])[0, 1]).mean()
if not same_protocol:
    profile_protocol = (f"Profile {cfg['name']!r} runs another fine-tuning protocol (its own sweep, Table 1), so "
                        "this section describes the quick profile's choice, not this run")
elif run_seeds == pooled_seeds:
    profile_protocol = (f"Profile {cfg['name']!r} runs this protocol with exactly these {len(run_seeds)} seeds "
                        f"({', '.join(map(str, run_seeds))}): its ground truth is their mean, and its reliability "
                        "is measured again on every run (Table 7)")
else:
    profile_protocol = (f"Profile {cfg['name']!r} runs this protocol with {len(run_seeds)} seeds "
                        f"({', '.join(map(str, run_seeds))}), not the pooled ones; Table 7 measures them")
n_pool = int(pooled_by_n.index.max())
booktext.glue(choice_reason=(f"it is the protocol of the study that reaches {reliability_level} for the fewest CPU minutes "
                             "(Table 11)" if cheapest == fresh_protocol else
                             f"it was confirmed on fresh seeds, although {cheapest} is cheaper in Table 11 "
                             "(not checked on fresh seeds)"),
              fresh_prophecy_n=f"{REL.spearman_brown(max(float(fresh_rel.iloc[-1]['r1']), 0.0), n_pool):.2f}",
              pooled_prophecy_n=f"{REL.spearman_brown(max(float(REL.one_seed_reliability(pooled, n_boot=50).overall), 0.0), n_pool):.2f}")
booktext.glue(profile_protocol=profile_protocol,
              validity_own=f"{validity_own:.2f}" if np.isfinite(validity_own) else "—")
cpu_fresh = float(cost.loc[fresh_protocol, "CPU min / seed"])
r1_fresh, r1_study = fresh_rel.iloc[-1], washout.loc[fresh_protocol]
booktext.glue(
    fresh_protocol=fresh_protocol, n_fresh=len(fresh_seeds), fresh_seeds=", ".join(map(str, fresh_seeds)),
    fresh_r1=float(r1_fresh["r1"]), fresh_r1_low=float(r1_fresh["r1_low"]), fresh_r1_high=float(r1_fresh["r1_high"]),
    study_r1=float(r1_study["r1"]), study_r1_low=float(r1_study["r1_low"]), study_r1_high=float(r1_study["r1_high"]),
    p1_r1=float(washout.loc["P1", "r1"]),
    n_study_seeds=study_tables[fresh_protocol]["replicate"].nunique(), n_pooled=int(pooled_by_n.index.max()),
    pooled_all=float(pooled_max["all targets"]),
    pooled_per_target=", ".join(f"{t} {pooled_max[t]:.2f}" for t in per_target_cols),
    pooled_meets="meets" if pooled_ok else "does not meet",
    n_measured=str(n_measured) if n_measured is not None else f"none up to {measured.index.max()}",
    n_prophesied=str(n_prophesied) if n_prophesied is not None else f"none up to {prophecy.index.max()}",
    cpu_fresh=cpu_fresh, prophesied_seeds=str(n_prophesied) if n_prophesied is not None else "—",
    prophesied_cpu=f"{n_prophesied * cpu_fresh:.0f}" if n_prophesied is not None else "—",
    fresh_vs_study=REL.replication_verdict(r1_fresh["r1"], r1_study["r1_low"], r1_study["r1_high"]),
    confirmed="not confirmed" if n_measured is None else "confirmed",
    confirmed_so=(f": {len(fresh_seeds)} fresh seeds alone are too few for the rule" if n_measured is None
                  else f": the mean of {n_measured} of them meets the rule"))

# %% [markdown]
# **Tables 12 and 13.** Top: the reliability of {glue:text}`fresh_protocol` on the {glue:text}`n_fresh` fresh
# seeds ({glue:text}`fresh_seeds`), columns as in Table 7: one seed's reliability is {glue:text}`fresh_r1:.2f`
# ({glue:text}`fresh_r1_low:.2f` to {glue:text}`fresh_r1_high:.2f`) on the fresh seeds, against
# {glue:text}`study_r1:.2f` ({glue:text}`study_r1_low:.2f` to {glue:text}`study_r1_high:.2f`) on the study's
# seeds of the same protocol and {glue:text}`p1_r1:.2f` for P1. Bottom: the split-half reliability of the mean
# of n fresh seeds, measured (halves of n/2 seeds), per target, over all targets (Spearman-Brown of the mean
# correlation), the mean and minimum of the targets' values and whether it meets the rule (mean at least
# {glue:text}`required_mean`, every target at least {glue:text}`required_each`).
#
# Pooled with the study's {glue:text}`n_study_seeds` seeds, the mean of {glue:text}`n_pooled` seeds has a
# split-half reliability of {glue:text}`pooled_all:.2f` ({glue:text}`pooled_per_target`), which
# {glue:text}`pooled_meets` the rule. On the fresh seeds alone, the smallest n that meets it is, measured,
# **{glue:text}`n_measured`**; prophesied from their one-seed reliabilities, {glue:text}`n_prophesied`. At the
# study's measured {glue:text}`cpu_fresh:.2f` CPU minutes per seed (all targets and sources),
# {glue:text}`prophesied_seeds` seeds cost about {glue:text}`prophesied_cpu` CPU minutes of fine-tuning; P1's
# protocol would need {glue:text}`p1_seeds` seeds ({glue:text}`p1_cpu:.0f` CPU minutes) for a reliability of
# {glue:text}`reliability_level`.
#
# The fresh one-seed reliability lies {glue:text}`fresh_vs_study`. The protocol is **{glue:text}`confirmed`**
# with the {glue:text}`n_fresh` fresh seeds{glue:text}`confirmed_so`.
#
# **The choice.** {glue:text}`fresh_protocol` is kept because {glue:text}`choice_reason`, and the number of
# seeds is the pooled {glue:text}`n_pooled`, the smallest number measured to meet the rule (Table 14). What this
# choice does not buy: the fresh seeds' lower one-seed reliability says that the study's seeds flattered the
# protocol, so a *different* set of {glue:text}`n_pooled` seeds would be expected to reach about
# {glue:text}`fresh_prophecy_n` (prophesied from the fresh seeds alone; {glue:text}`pooled_prophecy_n` from all
# {glue:text}`n_pooled`), and {glue:text}`n_prophesied` seeds would be the safe number. The rule holds for the
# seeds this profile runs, measured on every run (Table 7), not for seeds in general.
# {glue:text}`profile_protocol`. Its mean-over-seeds ranking agrees with the fullest fine-tuning's
# ({glue:text}`validity_reference`) at {glue:text}`validity_own` (Pearson over sources, mean over targets): what
# the cheap protocol gives up is fine-tuning depth, since at 3 epochs it ranks the sources closer to their
# starting features than 20 epochs do (the wash-out above).

# %% tags=["hide-input"]
pooled_by_n.round(3)

# %% [markdown]
# **Table 14.** The split-half reliability of the mean of n seeds, the fresh and the study's seeds pooled,
# measured per target and over all targets (halves of n/2 seeds, at most 200 splits drawn with a fixed seed).

# %% [markdown]
# ## Summary
# - Every available source is fine-tuned on every target with [D]'s recipe and sweep; the runs are stored one
#   per unit (`results/<profile>/finetuning.csv`) and resume after an interruption.
# - The ground truth is the test AUC of the lowest-validation-loss run on fold 1 as in [D], written to
#   `results/<profile>/ground_truth.csv` (wide) and `ground_truth_runs.csv` (the selected runs); the mean and SD
#   over folds, this project's extension, go to `ground_truth_mean.csv` and `ground_truth_folds.csv`.
# - The sweep repeated over seeds shows how much the ground truth itself moves (`ground_truth_seeds.csv`), and
#   `helpers.reliability` turns that into a reliability per target: split-half over seeds (Spearman-Brown), the
#   one-seed reliability with an interval, and the seeds needed for a chosen level; [D]'s sweep is measured the
#   same way through its weight-decay sub-sweeps.
# - Longer fine-tuning shrinks the seed noise but also the spread between sources (the wash-out); the cheapest
#   reliable protocol is the one that fine-tunes least, so its validity is checked against a fuller fine-tuning,
#   and its reliability on seeds the study never used (`per_seed_P2-lr0.001-fresh.csv`). The quick profile runs
#   that protocol (the whole fold-1 training subset, 3 epochs, lr 0.001) over the study's and the fresh seeds.
# - This run {glue:text}`own_rule` the rule for its own ground truth: split-half reliability
#   {glue:text}`own_split_mean` on average over the targets, {glue:text}`own_split_min` at least
#   ({glue:text}`own_split_min_target`).
# - On this profile one seed has a reliability of {glue:text}`own_r1`, the mean of its {glue:text}`n_own` seeds
#   about {glue:text}`own_now`, and {glue:text}`own_needed` seeds would be needed for
#   {glue:text}`reliability_level` (Table 7).
# - On the quick profile the sweep is tiny and the training short, so the AUCs are far below [D]'s; the
#   paper profile runs the full protocol on a GPU.
#
# ## What's next
# The scoring chapters compute transferability scores for the same sources and targets, and the evaluation
# chapter correlates them with this ground truth.

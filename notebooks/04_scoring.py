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
# # Scoring: transferability metrics for every (source, target) pair
#
# ## Overview
# A transferability metric predicts, *before* fine-tuning, how well a source model will do on a target. This
# chapter computes every metric of the profile for every available source on every target, as [D]
# {cite}`juodelyte2024dataset` does: features and source logits are extracted once per (source, target) on the
# target's fold-1 train subset, and each metric is computed from them (FU from the model itself).
#
# 1. The scoring units
# 2. The table of scores
# 3. Heatmaps of the scores per metric
# 4. The time each metric takes
# 5. Corrected forms beside [D]'s
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | [Pretraining chapter](02_pretraining) | Necessary | the source checkpoints |
# | [Fine-tuning chapter](03_finetuning) | Helpful | the ground truth these scores are compared with |
#
# - **Time to run**: under a minute on the quick profile (2-core CPU); seconds when the units are done.

# %% tags=["parameters", "hide-input"]
profile = "quick"   # profile name (profiles/<name>.yml) or path to a profile file
data_root = None    # None: $DATA_ROOT, else data/
device = None       # None: the profile's device (auto: cuda when present)

# %% [markdown]
# ## Imports

# %% tags=["hide-input"]
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display

from helpers import booktext
from helpers import scoring as S
from helpers.stages import scoring as scoring_stage
from helpers.metrics import REGISTRY
from helpers.paths import results_root
from helpers.profiles import load_profile, profile_targets, resolve_device

# %% tags=["hide-input"]
cfg = load_profile(profile)
targets = profile_targets(cfg, data_root)
sources = cfg["sources"]["dataset"]
device = device or resolve_device(cfg)
out = results_root(cfg["name"])
metrics = S.profile_metrics(cfg)
print(f"profile {cfg['name']!r}: sources {sources}, targets {targets}, device {device}")
print(f"metrics: {metrics}")

# %% [markdown]
# ## The scoring units
# One unit of the resumable runner per (source, target): the target's fold-1 train subset (the images the
# ground-truth runs were fine-tuned on), normalised as for fine-tuning, goes through the source model with its
# own head; the penultimate features, the source logits and the labels are cached as `.npy` files in the unit's
# folder. Pairwise metrics come from these arrays; FU back-propagates a triplet loss through the model with its
# head removed. NCTI and ETran are *set-level*: their per-source parts are min-max normalised across the
# candidate sources of a target, and so is [D]'s LP x FU. A source that cannot be had here is recorded, with
# the reason, and skipped. One call runs the stage (resuming what is done) and returns the tidy table:

# %%
scores = scoring_stage.run_scoring(cfg, sources, targets, out, root=data_root, device=device, progress=False)

# %% tags=["hide-input"]
status = scores.pivot_table(index="metric", columns="status", values="score", aggfunc="size", fill_value=0)
status.loc[[m for m in metrics if m in status.index]]

# %% [markdown]
# **Table 1.** Rows of the scores table per metric and status: `ok` rows have a score, `unavailable` rows belong
# to sources that cannot be loaded here, `skipped` / `error` / `nan` rows carry the reason in the table.

# %% tags=["hide-input"]
why = scores[scores["status"] != "ok"].drop_duplicates(["source", "status", "reason"])[["source", "status", "reason"]]
booktext.glue(n_reasons=len(why))
booktext.table(why.set_index("source")) if len(why) else print("Every pair was scored.")

# %% [markdown]
# **Table 2.** Why rows have no score: one line per source and reason ({glue:text}`n_reasons` in all). A machine
# without a network cannot download the ImageNet weights, so there the `imagenet` source is unavailable.

# %% [markdown]
# ## The table of scores
# The tidy table `results/<profile>/scores.csv` has one row per (source, target, fold, metric) with the score
# and the seconds it took. Below, the scores of one target as a source x metric table.

# %% tags=["hide-input"]
tables = S.score_tables(scores, metrics)
first = targets[0]
booktext.glue(first_target=first)
one = pd.DataFrame({m: t[first] for m, t in tables.items() if first in t.columns})
one.T.style.format("{:.3g}").background_gradient(axis=1, cmap="viridis")

# %% [markdown]
# **Table 3.** Scores of every available source (columns) for target **{glue:text}`first_target`**, one row per
# metric; the colour is normalised per row, brighter = higher = predicted to transfer better. The scales differ
# wildly between metrics: only the ranking of the sources within a row matters.

# %% [markdown]
# ## Heatmaps of the scores per metric
# Each panel is one metric: sources in rows, targets in columns. The colour is min-max normalised within each
# target column, since a metric is only ever used to rank the sources of one target.

# %% tags=["hide-input"]
names = list(tables)
ncol = 2  # two panels a row keep the numbers and labels readable at page width
nrow = int(np.ceil(len(names) / ncol))
fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, (0.24 * len(sources) + 0.9) * nrow), squeeze=False)
for ax, m in zip(axes.flat, names):
    w = tables[m].reindex(columns=[t for t in targets if t in tables[m].columns])
    rng = (w.max() - w.min()).replace(0, np.nan)
    norm = (w - w.min()) / rng
    sns.heatmap(norm, ax=ax, cmap="viridis", vmin=0, vmax=1, cbar=False, annot=w.to_numpy(), fmt=".2g",
                annot_kws={"fontsize": 7})
    ax.set_title(m, fontsize=10)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(labelsize=7)
    ax.set_xticklabels([t.get_text().replace("mnist", "") for t in ax.get_xticklabels()])
    ax.set_yticklabels([t.get_text().replace("medmnist_union", "union").replace("mnist", "")
                        for t in ax.get_yticklabels()], rotation=0)
for ax in axes.flat[len(names):]:
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Figure 1.** Scores per metric (panel), source (row) and target (column). Numbers are the raw scores; the
# colour is min-max normalised within each target column (brighter = ranked higher by the metric). A metric that
# agrees with the ground truth of the Fine-tuning chapter lights up the cells of the sources that fine-tuned
# best. `union` is the leave-target-out MedMNIST union source.

# %% [markdown]
# The panels differ visibly: metrics built on the same features disagree on which source comes first, and LEEP
# and NCE depend on the source head, which for `random` is an untrained 1000-class layer. The cell of the source
# equal to the target is scored too, but the Correlation chapter excludes it, as [D] does. The table below counts,
# per metric, how often each source is ranked first across the targets.

# %% tags=["hide-input"]
firsts = pd.DataFrame({m: t.idxmax().value_counts() for m, t in tables.items()}).fillna(0).astype(int).T
firsts

# %% [markdown]
# **Table 4.** Number of targets in which each source (column) gets the highest score of each metric (row), the
# source equal to the target included.

# %% [markdown]
# ## The time each metric takes

# %% tags=["hide-input"]
ok = scores[scores["status"] == "ok"]
secs = ok.groupby("metric")["seconds"].agg(["mean", "median", "max", "sum"]).reindex(
    [m for m in metrics if m in set(ok["metric"])])
ext = scoring_stage.extraction_times(out, profile=cfg)
fig, ax = plt.subplots(figsize=(6, 0.3 * len(secs) + 1))
secs["mean"].sort_values().plot.barh(ax=ax, color="tab:blue")
ax.set_xscale("log")
ax.set_xlabel("seconds per (source, target), mean (log scale)")
fig.tight_layout()
plt.show()
booktext.glue(device=str(device), extract_s=float(ext["seconds"].mean()) if len(ext) else float("nan"),
              slowest=", ".join(secs["mean"].sort_values(ascending=False).index[:3]))

# %% [markdown]
# **Figure 2.** Mean seconds per (source, target) pair for each metric on **{glue:text}`device`**, after feature
# extraction (FU includes its own forward and backward passes; set-level scores include the time of their
# per-source parts). Feature extraction itself is shared by all metrics; it took {glue:text}`extract_s:.2f` s per
# unit on average in the last run (less when the cached features were read back).

# %% tags=["hide-input"]
secs.style.format("{:.3f}")

# %% [markdown]
# **Table 5.** Seconds per metric over the scored pairs: mean, median, maximum and total. On the quick profile
# the sets are small (at most a few hundred images); the slowest metrics here are {glue:text}`slowest`.

# %% [markdown]
# ## Corrected forms beside [D]'s
# Two of [D]'s computations are defects that change rankings, and the table carries both forms so that the
# difference can be seen rather than asserted:
#
# - **SFDA saturates.** With about 200 images and 512 features the reference arithmetic separates the classes
#   perfectly and scores every source exactly 1.0 on binary targets, so no ranking is left. `sfda` here projects
#   the features on their top 64 principal components first (the form `benchmarks/sfda_saturation.py` chose on
#   real features; its `options` column says so); `sfda_reference` is [D]'s arithmetic.
# - **Set-level normalisation over the wrong candidates.** NCTI, ETran and LP x FU min-max normalise across the
#   candidate sources. [D] leaves the target's own source out before normalising; normalising with it in
#   (this project's earlier form) lets an extreme self source re-weight the parts and reorder the others.

# %% tags=["hide-input"]
sf = scores[scores["metric"].isin(["sfda", "sfda_reference"]) & (scores["status"] == "ok")]
sf = sf[[s != t for s, t in zip(sf["source"], sf["target"])]]
sat = (sf.assign(at_one=sf["score"] > 1 - 1e-9)
         .groupby(["target", "metric"]).agg(sources=("score", "size"), at_1_0=("at_one", "sum"),
                                              spread=("score", lambda v: v.max() - v.min()))
         .unstack("metric"))
form = sorted(set(scores.loc[scores["metric"] == "sfda", "options"]) - {""})
booktext.glue(sfda_options=", ".join(form) or "(none recorded)")
sat.style.format("{:.3g}")

# %% [markdown]
# **Table 6.** SFDA per target over the candidate sources (the target's own source left out): how many sources
# each form scores at exactly 1.0 and the spread of its scores. `sfda` ran with options
# **{glue:text}`sfda_options`**; `sfda_reference` is the reference arithmetic. A form with every source at 1.0
# ranks nothing.

# %% tags=["hide-input"]
cmp = scoring_stage.set_level_comparison(out, profile=cfg)
if len(cmp):
    changed = (cmp.assign(moved=cmp["rank_excluded"] != cmp["rank_included"])
                  .groupby(["metric", "target"])
                  .agg(candidates=("source", "size"), sources_that_move=("moved", "sum"),
                       top_excluded=("rank_excluded", lambda r: cmp.loc[r.idxmin(), "source"]),
                       top_included=("rank_included", lambda r: cmp.loc[r.idxmin(), "source"])))
    booktext.glue(moved=int(changed["sources_that_move"].sum()))
    display(changed)
else:
    booktext.glue(moved=0)
    print("No set-level scores in this profile.")

# %% [markdown]
# **Table 7.** Set-level scores with the target's own source left out before normalising (the default,
# PROTOCOL.md; [D] kept it in FU's min-max) against normalising with it in: per metric and target, how many of the other candidates change rank
# ({glue:text}`moved` in all) and the top source under each form.

# %% [markdown]
# ## Summary
# - Every metric of the profile was computed for every available (source, target) pair, from one feature
#   extraction per pair; the table is in `results/<profile>/scores.csv` with its timings.
# - Unavailable sources (here `imagenet`, offline) and metrics that do not apply are recorded with a reason.
# - Metrics disagree on the ranking of the sources; which agrees with fine-tuning is the next chapter's subject.
# - SFDA is scored in a non-saturating form with [D]'s arithmetic beside it, and set-level scores leave the
#   target's own source out before normalising; Tables 6 and 7 show what [D]'s forms would give.
#
# ## What's next
# The [Correlation chapter](05_correlation) compares these scores with the fine-tuned ground truth.

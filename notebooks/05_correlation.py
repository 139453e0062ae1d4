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
# # Correlation: do the scores predict fine-tuning?
#
# ## Overview
# A metric is useful when it ranks the candidate sources of a target in the order fine-tuning would. Following
# [D] {cite}`juodelyte2024dataset`, this chapter measures that agreement per target with the weighted Kendall's
# τ (which weighs the top of the ranking most), the source equal to the target excluded, and then summarises
# across targets.
#
# 1. Per-target agreement
# 2. Means and medians per metric
# 3. Scores against fine-tuned AUC
# 4. Ranks, Friedman test and critical differences
# 5. What trusting each metric costs
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | [Fine-tuning chapter](03_finetuning) | Necessary | the ground truth `ground_truth.csv` |
# | [Scoring chapter](04_scoring) | Necessary | the scores `scores.csv` |
# | Kendall's τ | Helpful | weighted τ: `scipy.stats.weightedtau` with its defaults |
#
# - **Time to run**: seconds.

# %% tags=["parameters", "hide-input"]
profile = "quick"   # profile name (profiles/<name>.yml) or path to a profile file
n_boot = 300        # bootstrap replicates for the confidence intervals

# %% [markdown]
# ## Imports

# %% tags=["hide-input"]
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from helpers import booktext
from helpers import evaluation as E
from helpers import reference as R
from helpers import reliability as REL
from helpers import scoring as S
from helpers.paths import require_result, results_root
from helpers.profiles import load_profile
from helpers.runner import atomic_write_csv
from helpers.stages import scoring as scoring_stage

# %% tags=["hide-input"]
cfg = load_profile(profile)
out = results_root(cfg["name"])
# each input names the stage that writes it, and the command, when it is missing
truth = pd.read_csv(require_result(cfg, "ground_truth.csv"), index_col="source")
scores = S.read_scores(out)
metrics = S.profile_metrics(cfg)
tables = S.score_tables(scores, metrics)
targets = list(truth.columns)
print(f"profile {cfg['name']!r}: {len(tables)} metrics with scores, targets {targets}, "
      f"sources with ground truth {list(truth.index)}")

# %% [markdown]
# ## Per-target agreement
# For every metric and target, `helpers.evaluation.correlate` pairs each source's score with its fine-tuned
# test AUC (the source equal to the target excluded), and computes the weighted τ, Kendall's τ-b, Pearson's r,
# the top-1 relative AUC (fine-tuned AUC of the top-scored source over the best one) and the regret (AUC lost by
# fine-tuning the top-scored source instead of the best). A constant score column gives NaN, flagged. One call
# does it for every metric, given the wide score tables (source x target) and the ground truth:

# %%
results = E.correlate_many(tables, truth, exclude_self=True)
long = E.tidy(results)

# %% tags=["hide-input"]
wt = E.wide(long, "weighted_tau")
booktext.glue(n_src=int(long["n_sources"].max()), n_targets=len(targets), n_metrics=wt.shape[1])
wt.T.style.format("{:.3f}", na_rep="NaN").background_gradient(axis=None, cmap="RdBu", vmin=-1, vmax=1)

# %% [markdown]
# **Table 1.** Weighted τ per metric (rows) and target (columns), over at most {glue:text}`n_src` sources per
# target (blue = the metric ranks the sources as fine-tuning does, red = the reverse). NaN means the metric gave
# every source the same score.

# %% tags=["hide-input"]
cols = ["weighted_tau", "kendall_tau", "pearson", "top1_relative", "regret", "top_source", "best_source"]
long.set_index(["metric", "target"])[cols].round(3)

# %% [markdown]
# **Table 2.** All per-target statistics: `top_source` is the source the metric ranks first, `best_source` the
# one that fine-tuned best. The full table, with the number of sources and the constant-score flag, is
# `results/<profile>/correlation_per_target.csv`.

# %% [markdown]
# ## Means and medians per metric

# %% tags=["hide-input"]
summary = E.summarize(long, ("weighted_tau",)).sort_values("mean", ascending=False)
boot = E.bootstrap_means(tables, truth, n_boot=n_boot, seed=0)
summary = summary.join(boot[["ci_low", "ci_high", "p_best"]])
booktext.glue(n_boot=n_boot, best_metric=summary.index[0], best_mean=float(summary["mean"].iloc[0]))
summary.style.format("{:.3f}", subset=["mean", "median", "ci_low", "ci_high", "p_best"])

# %% [markdown]
# **Table 3.** Mean and median weighted τ over the {glue:text}`n_targets` targets per metric (NaN skipped,
# counted in `n_nan`), with a 95 % percentile bootstrap interval ({glue:text}`n_boot` replicates, sources
# resampled per target) and `p_best`, the share of replicates in which the metric has the highest mean. The
# highest mean here is **{glue:text}`best_metric`** ({glue:text}`best_mean:.2f`).

# %% tags=["hide-input"]
fig = E.interval_plot(boot, title="mean weighted τ with 95 % bootstrap intervals")
plt.show()
booktext.glue(median_width=float((boot["ci_high"] - boot["ci_low"]).median()))

# %% [markdown]
# **Figure 1.** Mean weighted τ over targets per metric (dot) and its bootstrap interval (bar). With at most
# {glue:text}`n_src` candidate sources on each of {glue:text}`n_targets` targets the median interval is
# {glue:text}`median_width:.2f` wide; a metric is separated from another only where their intervals do not
# overlap.

# %% [markdown]
# ## Scores against fine-tuned AUC
# As in [D]'s scatter figures, one panel per metric and one figure per target: each point is a source, the line
# a least-squares fit, and the panel title the metric and its weighted τ.

# %% tags=["hide-input"]
for target in targets:
    fig = E.scatter_target(tables, truth, target, ncols=4)
    plt.show()

# %% [markdown]
# **Figure 2.** Score (x) against fine-tuned test AUC (y), one figure per target and one panel per metric, the
# source equal to the target left out; the panels of a row share the AUC axis. A rising line means the metric
# ranks the sources as fine-tuning does; τw is the weighted τ of the panel.

# %% [markdown]
# ## Ranks, Friedman test and critical differences
# Within each target, the metrics are ranked by weighted τ (1 = best; NaN ranks last). The Friedman test asks
# whether the average ranks differ more than chance would allow, and the Nemenyi critical difference (CD) says
# how far apart two average ranks must be to call the metrics different.
#
# With a handful of targets these statistics are **illustrative only**: the test has almost no power, and the
# CD is about as large as the whole range of ranks.

# %% tags=["hide-input"]
rank_stats = len(targets) >= 2 and wt.shape[1] >= 3
if rank_stats:
    ranks = E.rank_table(wt)
    fr, ne = E.friedman(wt), E.nemenyi(wt)
    booktext.glue(chi2=float(fr["statistic"]), p_friedman=float(fr["pvalue"]), n_fr=int(fr["n"]),
                  k_fr=int(fr["k"]), cd=float(ne["cd"]))
    display(ranks.T.assign(mean=ranks.mean()).sort_values("mean").round(2))
    fig = E.cd_diagram(ne["avg_ranks"], ne["cd"], title="critical-difference diagram (weighted τ ranks)")
    plt.show()
else:
    booktext.glue(chi2=float("nan"), p_friedman=float("nan"), n_fr=len(targets), k_fr=wt.shape[1],
                  cd=float("nan"))
    print("Fewer than 2 targets or 3 metrics: the rank statistics are not computed.")

# %% [markdown]
# **Table 4 and Figure 3.** The rank of each metric within each target (1 = highest weighted τ) and the average
# rank; below it the critical-difference diagram: metrics on the average-rank axis (1 = best, left), metrics
# joined by a thick bar not significantly different (Nemenyi, α = 0.05). Friedman χ² =
# {glue:text}`chi2:.2f`, p = {glue:text}`p_friedman:.3f` over n = {glue:text}`n_fr` targets and
# k = {glue:text}`k_fr` metrics; the Nemenyi CD (α = 0.05) is {glue:text}`cd:.2f` ranks.

# %% [markdown]
# ## What trusting each metric costs

# %% tags=["hide-input"]
practical = E.practical_summary(long).sort_values("regret_mean")
practical.round(3)

# %% [markdown]
# **Table 5.** Per metric: mean top-1 relative AUC, mean / median / worst regret (AUC points lost by fine-tuning
# the top-scored source instead of the best) and `top1_is_best`, the expected number of targets in which the
# metric's first choice is the best source.

# %% [markdown]
# ## Corrected forms against [D]'s
# The Scoring chapter scores two of [D]'s computations in both their corrected and their original form. Here is
# what each form gives against the ground truth: SFDA with the PCA-64 step (`sfda`) against the reference
# arithmetic (`sfda_reference`), and the set-level scores with the target's own source left out before
# normalising (the default, PROTOCOL.md; [D] kept it in FU's min-max only, see the Reproduction chapter) against
# normalising with it in.

# %% tags=["hide-input"]
pairs = []
if {"sfda", "sfda_reference"} <= set(wt.columns):  # wt: targets x metrics
    pairs.append(("sfda", wt["sfda"], wt["sfda_reference"]))
setcmp = scoring_stage.set_level_comparison(out, profile=cfg)
for m in sorted(set(setcmp["metric"])) if len(setcmp) else []:
    g = setcmp[setcmp["metric"] == m]
    forms = {f: E.correlate(g.pivot_table(index="source", columns="target", values=f), truth)["weighted_tau"]
             for f in ("excluded", "included")}
    pairs.append((m, forms["excluded"], forms["included"]))
rows = [{"metric": name, "target": t, "corrected": a.get(t, np.nan), "D_form": b.get(t, np.nan)}
        for name, a, b in pairs for t in targets]
forms_table = pd.DataFrame(rows, columns=["metric", "target", "corrected", "D_form"])
booktext.glue(n_forms_nan=int(forms_table["D_form"].isna().sum()))
if pairs:
    display(forms_table.pivot_table(index="metric", columns="target", values=["corrected", "D_form"],
                                    dropna=False).round(3))
else:
    print("This profile has neither SFDA nor set-level scores.")

# %% [markdown]
# **Table 5b.** Weighted τ per target of each corrected form (`corrected`) and of the form it replaces
# (`D_form`: SFDA's reference arithmetic; set-level scores normalised with the target's own source in). NaN
# means every source got the same score ({glue:text}`n_forms_nan` such cells, mostly SFDA's saturation at 1.0).

# %% [markdown]
# ## Comparison with [D]
# The [Reproduction chapter](06_reproduction) recomputes [D]'s published weighted τ from its released scores and
# fine-tuning logs: over 10 targets and about a dozen sources, the mean weighted τ in the dataset-transfer
# scenario ranges from about .18 for NCTI (computed with the sign defect of [D]'s code) and .34 for LogME to .52
# for LP x FU, [D]'s proposed score and its best. The table below sets those means next to ours where the
# metric is shared. Our quick-profile numbers come from a few targets with about ten candidate sources each
# (the source equal to the target excluded), a few epochs of pretraining and fine-tuning on subsets at 28 px,
# and a ground truth {glue:text}`gt_reliability_text` (Fine-tuning chapter); agreement or disagreement with
# [D] here is weak evidence either way.

# %% tags=["hide-input"]
# the ground truth's reliability (Fine-tuning chapter): the split-half over seeds of the mean it is
seeds_path = results_root(cfg["name"]) / "ground_truth_seeds.csv"
gt_rel = None
if seeds_path.is_file():
    gt_seeds = pd.read_csv(seeds_path).rename(columns={"seed": "replicate", "test_auc": "value"})
    gt_rel, _ = REL.measurable_summary(gt_seeds, n_boot=200, seed=0)
if gt_rel is None:
    gt_reliability_text = "whose reliability cannot be measured here (one seed, or too few sources)"
else:
    split = gt_rel.iloc[:-1]["split_half"]
    gt_reliability_text = (f"that is the mean over {int(gt_rel['replicates'].max())} seeds, with a split-half "
                           f"reliability of {split.mean():.2f} on average over the targets ({split.min():.2f} at "
                           f"least), which caps any metric's correlation with it at about "
                           f"{np.sqrt(max(split.mean(), 0.0)):.2f}")
booktext.glue(gt_reliability_text=gt_reliability_text)
ref = pd.read_csv(require_result(cfg, "reference/dovile2024_weighted_tau.csv"))
ref = ref[ref["scenario"] == "dataset"].groupby("metric")["weighted_tau"].mean().rename("D_mean")
ref.index = ref.index.map(R.code_name)
cmp = summary[["mean"]].rename(columns={"mean": "ours_mean"}).join(ref, how="inner")
booktext.glue(best_ours=cmp["ours_mean"].idxmax(), best_ours_mean=float(cmp["ours_mean"].max()),
              best_d=cmp["D_mean"].idxmax(), best_d_mean=float(cmp["D_mean"].max()),
              rank_agreement=float(cmp["ours_mean"].corr(cmp["D_mean"], method="spearman")))
cmp.round(3)

# %% [markdown]
# **Table 6.** Mean weighted τ of the metrics shared with [D]: ours (this profile) and [D]'s dataset-transfer
# means as reproduced in the Reproduction chapter. Among the shared metrics, the best mean here is
# **{glue:text}`best_ours`** ({glue:text}`best_ours_mean:.2f`), in [D] **{glue:text}`best_d`**
# ({glue:text}`best_d_mean:.2f`); the rank correlation of the two columns is {glue:text}`rank_agreement:.2f`. Our
# NCTI subtracts the within-class variability term as the NCTI paper does (no sign defect), so it is not the
# quantity [D] reported.

# %% tags=["hide-input"]
atomic_write_csv(long, out / "correlation_per_target.csv")

# %% [markdown]
# ## Summary
# - Per target, the weighted τ between each metric's scores and the fine-tuned AUC is in Table 1; the means,
#   medians and bootstrap intervals in Table 3.
# - On the quick profile the intervals are wide and the Friedman test has no power: the statistics show the
#   method, not a ranking of the metrics.
# - Regret (Table 5) says how much AUC a practitioner loses by trusting each metric's first choice.
# - Table 5b sets the corrected SFDA and set-level forms beside [D]'s: the reference SFDA ranks nothing where it
#   saturates.
#
# ## What's next
# The [Reproduction chapter](06_reproduction) runs the same functions on [D]'s released data.

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
# # Reproduction of [D]
#
# ## Overview
# Before we trust our own correlation code on our own scores, we run it on the tables that [D]
# {cite}`juodelyte2024dataset` published: their transferability scores for every (source, target) pair and
# the fine-tuned test AUC that serves as ground truth. If `helpers.evaluation` is right, it must give back
# their mean weighted Kendall's τ to the last published digit. Once it does, the same tables let us ask
# questions the paper did not: how much the ground-truth protocol itself moves the ranking of metrics, how
# certain those rankings are, and how much AUC a practitioner loses by trusting each metric's top choice.
#
# 1. The published tables
# 2. Dataset transferability: per-target weighted τ and the means
# 3. Architecture transferability and the notebook's direction flips
# 4. Two defects in the published scores: SFDA's NaNs and NCTI's sign
# 5. Ranks, Friedman test and Nemenyi post-hoc
# 6. Scores against fine-tuned AUC
# 7. Re-deriving the ground truth from the sweep logs
# 8. Other selection rules and bootstrap intervals
# 9. What [D] did not report: top-1 accuracy and regret
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | Weighted Kendall's τ | Necessary | [`scipy.stats.weightedtau`](https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.weightedtau.html): a rank correlation that weighs agreement at the top of the ranking most |
# | Friedman / Nemenyi tests | Helpful | [Demšar (2006), JMLR 7:1–30](https://jmlr.org/papers/v7/demsar06a.html) |
# | pandas | Helpful | every table below is a DataFrame |
#
# - **Time to run**: well under a minute; it reads only the small CSV files in `data/reference/dovile2024/`
#   (MIT licence, copied unchanged from the authors' repository) and trains nothing.

# %% tags=["parameters", "hide-input"]
profile = "quick"     # shown only: this chapter reads the published tables, whatever the profile
reference_dir = None  # None: data/reference/dovile2024 in the project
n_boot = 500          # bootstrap replicates for the confidence intervals
seed = 0              # seed of the bootstrap

# %% [markdown]
# ## Imports

# %% tags=["hide-input"]
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from helpers import booktext
from helpers import evaluation as E
from helpers import reference as R
from helpers.paths import PROJECT_ROOT

pd.set_option("display.precision", 3)
pd.set_option("display.width", 160)
ref = R.reference_dir(reference_dir)
L = R.METRIC_LABELS
print(f"profile {profile!r}; reference tables from {ref.relative_to(PROJECT_ROOT) if ref.is_relative_to(PROJECT_ROOT) else ref}")

# %% [markdown]
# ## The published tables
# [D] evaluates two scenarios. In **dataset transferability** the candidates are 14 ResNet18 sources
# (ImageNet, RadImageNet, a leave-target-out MedMNIST model and the 11 single MedMNIST datasets plus
# ChestMNIST) and the source trained on the target itself is left out; in **architecture transferability**
# they are 9 ImageNet architectures. Each score table has one row per source and one column per target; the
# ground truth is the test AUC after fine-tuning on the target (stored as a fraction for datasets and in
# percent for architectures; we convert both to fractions). The table below lists what was loaded.

# %% tags=["hide-input"]
inventory = []
for scen in R.SCENARIOS:
    truth = R.load_ground_truth(scen, ref)
    inventory.append({"scenario": scen, "table": "ground truth (test AUC)", "sources": truth.shape[0],
                      "targets": truth.shape[1], "empty cells": int(truth.isna().sum().sum())})
    for m in R.METRICS:
        s = R.load_scores(m, scen, ref)
        inventory.append({"scenario": scen, "table": L[m], "sources": s.shape[0], "targets": s.shape[1],
                          "empty cells": int(s.isna().sum().sum())})
pd.DataFrame(inventory).set_index(["scenario", "table"])

# %% [markdown]
# The tables are complete apart from the diagonal of the dataset scenario, where the ground truth, LP and
# NCTI are empty (a source is never fine-tuned on itself); the other metrics hold a value there that is
# never used, since the correlation leaves the source equal to the target out.

# %% [markdown]
# ## Dataset transferability: per-target weighted τ and the means
# For each target we correlate each metric's scores with the fine-tuned AUC over the 14 candidate sources,
# with `scipy.stats.weightedtau(score, auc)` and its default arguments, exactly as [D] did. LP x FU is
# [D]'s proposed score: LP and FU min-max normalised across the sources of the target and multiplied.
# The table shows the weighted τ per target (rows) and metric (columns).

# %%
long = pd.concat([R.reproduce("dataset", ref), R.reproduce("architecture", ref)], ignore_index=True)
wt_dataset = E.wide(long[long.scenario == "dataset"]).rename(columns=L)
wt_dataset

# %% [markdown]
# Two cells are NaN: SFDA on BreastMNIST and PneumoniaMNIST (section 4 explains why). The means over targets
# skip them, as NumPy's and pandas' NaN-aware means did for [D], so SFDA's mean is over 9 targets. The next
# table compares our means with the numbers in [D] (three decimals) for both scenarios: `ours` is the exact
# mean, `published` the paper's, and `matches` says whether ours rounds to it.

# %% tags=["hide-input"]
comparison = R.compare_with_published(long)
comparison["metric"] = comparison["metric"].map(L)
display(comparison.set_index(["scenario", "metric"]).style.format(
    {"ours": "{:.6f}", "ours_3dp": "{:.3f}", "published": "{:.3f}", "abs_diff": "{:.6f}"}, na_rep="—"))
booktext.glue(n_match=int(comparison["matches"].eq(True).sum()), n_pub=int(comparison["published"].notna().sum()),
              max_diff=float(comparison["abs_diff"].max()))

# %% [markdown]
# **{glue:text}`n_match` of {glue:text}`n_pub`** published means reproduced to the third decimal (largest
# difference {glue:text}`max_diff:.6f`).

# %% [markdown]
# One detail matters for LP x FU: [D] min-max normalised each column of the published tables *as a whole*.
# FU also has a value for the source equal to the target (LP does not), and on DermaMNIST that value is the
# smallest FU, so it sets the minimum of the normalisation. Normalising over the 14 candidates only gives
# .522 instead of .523:

# %% tags=["hide-input"]
alt = R.reproduce("dataset", ref, combine_over="candidates")
whole = long[(long.scenario == "dataset") & (long.metric == "lp_x_fu")].weighted_tau.mean()
cands = alt[alt.metric == "lp_x_fu"].weighted_tau.mean()
print(f"LP x FU, min-max over the published column: {whole:.4f}")
print(f"LP x FU, min-max over the candidates only:  {cands:.4f}")
per_t = pd.DataFrame({"D": long[(long.scenario == "dataset") & (long.metric == "lp_x_fu")].set_index("target")
                      .weighted_tau, "ours": alt[alt.metric == "lp_x_fu"].set_index("target").weighted_tau})
moved = per_t[(per_t.D - per_t.ours).abs() > 5e-4]
booktext.glue(lp_fu_moved=", ".join(f"{t} ({r.D:.3f} in [D]'s form, {r.ours:.3f} ours)"
                                    for t, r in moved.iterrows()) or "none",
              lp_fu_unmoved=len(per_t) - len(moved))

# %% [markdown]
# This book's scoring stage follows PROTOCOL.md and leaves the target's own source out of *both* min-maxes
# (`helpers.metrics.setlevel.lp_fu`; `self_in_fu=True` is [D]'s exact form). That differs from [D] for FU only.
# On [D]'s tables the targets that move are {glue:text}`lp_fu_moved`; the other {glue:text}`lp_fu_unmoved` are
# unchanged to the third decimal.

# %% [markdown]
# The per-target values of both scenarios are written to `results/reference/dovile2024_weighted_tau.csv`
# (columns `scenario`, `target`, `metric`, `weighted_tau`; full precision, NaN as an empty cell), which is
# tracked in git as the regression reference for our own correlation chapter.

# %% tags=["hide-input"]
out_path = R.write_weighted_tau(long)
print(f"wrote {len(long)} rows to {out_path.relative_to(PROJECT_ROOT) if out_path.is_relative_to(PROJECT_ROOT) else out_path}")

# %% [markdown]
# ## Architecture transferability and the notebook's direction flips
# [D]'s architecture notebook negates some scores before correlating them. Weighted τ is not symmetric under
# a sign flip (it weighs the *top* of the ranking, and negating a score turns its bottom into its top), so
# the flips cannot be undone by changing the sign of τ. Trying every subset, the published architecture
# numbers come out exactly when **LEEP, PARC, NCTI, NLEEP, LP and FU are negated and LogME and SFDA are
# not**, with LP x FU computed from the negated LP and FU. `helpers.reference.ARCHITECTURE_FLIPS` holds that
# set, and `load_all_scores(..., flips=())` turns it off. The table shows the means with [D]'s flips, with
# none, and the published numbers.

# %% tags=["hide-input"]
arch_noflip = R.reproduce("architecture", ref, flips=())
arch_flip = long[long.scenario == "architecture"]
flipped = E.wide(arch_flip).columns
flips_table = pd.DataFrame({
    "negated by [D]": pd.Series({m: m in R.ARCHITECTURE_FLIPS or m == "lp_x_fu" for m in flipped}),
    "with [D]'s flips": E.wide(arch_flip).mean(),
    "without flips": E.wide(arch_noflip).mean(),
    "published": pd.Series(R.PUBLISHED_MEANS["architecture"]),
}).loc[list(flipped)].rename(index=L)
flips_table

# %% [markdown]
# Without the flips, every negated metric has a *negative* mean weighted τ on architectures: higher LEEP,
# NLEEP, PARC, NCTI, LP or FU goes with *lower* fine-tuned AUC across architectures. The flips are
# therefore not a convention fixed in advance (the same metrics are not negated in the dataset scenario)
# but a choice that makes each metric look better on this scenario. PROTOCOL lists this among the defects
# to avoid; we reproduce it here only to show that our code matches, and report both columns.

# %% [markdown]
# ## Two defects in the published scores: SFDA's NaNs and NCTI's sign
# **SFDA.** SFDA's score is a mean posterior probability of the true class after a regularised Fisher
# projection. With about 200 training images and 512 feature dimensions, a binary task is separable, and the
# posterior saturates at exactly 1.0 for every source. A constant score has no ranking, so weighted τ is
# undefined (NaN), and `helpers.evaluation.correlate` flags it (`constant_scores`) instead of hiding it. The
# table counts, per target, how many of the candidate sources get exactly 1.0.

# %% tags=["hide-input"]
R.sfda_saturation("dataset", ref)

# %% [markdown]
# BreastMNIST and PneumoniaMNIST (both binary) are constant, hence NaN and the "9 targets" of the SFDA mean;
# on OCTMNIST and RetinaMNIST 13 and 12 of 14 sources tie at 1.0, so SFDA's τ there rests on one or two
# sources. In the architecture scenario six of the nine architectures score 1.0 (to 15 digits) on every
# target, so SFDA's .187 there rests on the order of ConvNeXt, ShuffleNet and ResNet alone.
#
# **NCTI.** NCTI combines three parts, each min-max normalised across the candidate sources: the
# nearest-centroid accuracy `ncc`, the class separation `seli` and the volume term `vc`, where a larger `vc`
# means a *worse* source; the method defines the score as `ncc + seli - vc`. [D]'s code adds `vc`. Each
# part lies in [0, 1], so the correct score lies in [-1, 2], [D]'s in [0, 3]. The published NCTI reaches 3.0
# (all three parts at their maximum), which is only possible with `+ vc`:

# %% tags=["hide-input"]
R.ncti_range("dataset", ref)

# %% [markdown]
# Since only the combined score was published, the sign cannot be repaired from these tables; NCTI's low
# mean (.183, the lowest of the dataset scenario) is a measurement of the defective score, not of NCTI.

# %% [markdown]
# ## Ranks, Friedman test and Nemenyi post-hoc
# Means hide how consistent a metric is across targets. Following [D] we rank the seven methods (the six
# published metrics and LP x FU) within each target (1 = highest weighted τ, a NaN ranks last as in [D]'s
# tables), test whether the average ranks differ with the Friedman test, and compare pairs with the
# Nemenyi post-hoc test. The first table checks our ranks against [D]'s published rank tables.

# %% tags=["hide-input"]
methods = ["logme", "sfda", "leep", "parc", "ncti", "nleep", "lp_x_fu"]
rank_check = []
for scen in R.SCENARIOS:
    ours = E.rank_table(E.wide(long[long.scenario == scen])[methods], method="min").astype(int)
    theirs = R.load_rank_table(scen, ref)[methods]
    differ = (ours != theirs.loc[ours.index])
    rank_check.append({"scenario": scen, "cells": differ.size, "cells that differ": int(differ.to_numpy().sum()),
                       "targets that differ": ", ".join(differ.index[differ.any(axis=1)]) or "none"})
pd.DataFrame(rank_check).set_index("scenario")

# %% [markdown]
# For datasets our ranks equal [D]'s in all 77 cells. For architectures, nine of eleven targets agree; on
# DermaMNIST and TissueMNIST [D]'s rank table orders a few metrics differently from the weighted τ that
# reproduces their published means, and no choice of flipped metrics reproduces those two rows. The rank
# table was evidently written from another state of the architecture notebook than the means; we cannot
# tell which, and rank the values that reproduce the published means.
#
# The Friedman statistic and the Nemenyi critical difference (CD) at α = 0.05 follow; two methods whose
# average ranks differ by less than the CD are not distinguishable on 11 targets.

# %% tags=["hide-input"]
tests, nem = [], {}
for scen in R.SCENARIOS:
    w = E.wide(long[long.scenario == scen])[methods]
    fr = E.friedman(w)
    nem[scen] = E.nemenyi(w, alpha=0.05)
    tests.append({"scenario": scen, "targets": fr["n"], "methods": fr["k"], "Friedman χ²": fr["statistic"],
                  "p-value": fr["pvalue"], "Nemenyi CD": nem[scen]["cd"],
                  "best (avg rank)": f"{L[fr['avg_ranks'].index[0]]} ({fr['avg_ranks'].iloc[0]:.2f})"})
pd.DataFrame(tests).set_index("scenario")

# %% tags=["hide-input"]
fig = E.cd_diagram(nem["dataset"]["avg_ranks"], nem["dataset"]["cd"], labels=L,
                   title="Dataset transferability: average rank of weighted τ over 11 targets")

# %% [markdown]
# **Figure 1.** Critical-difference diagram for dataset transferability. Each method sits at its average
# rank over the 11 targets (1 = best, left); thick bars join methods whose average ranks differ by less than
# the Nemenyi critical difference (bar at the top). LP x FU has the best average rank; it is significantly
# better than NCTI and SFDA, but not distinguishable from NLEEP, LEEP, LogME or PARC on 11 targets.

# %% tags=["hide-input"]
fig = E.cd_diagram(nem["architecture"]["avg_ranks"], nem["architecture"]["cd"], labels=L,
                   title="Architecture transferability (with [D]'s flips)")

# %% [markdown]
# **Figure 2.** The same diagram for architecture transferability, computed after [D]'s direction flips.
# The order differs from the dataset scenario, and here the Friedman test (table above, p ≈ 0.14) does not
# reject that all seven methods have the same average rank: on architectures, no method is shown to be
# better than another.

# %% [markdown]
# ## Scores against fine-tuned AUC
# For the dataset scenario, each metric's score (x axis) against the fine-tuned AUC (y axis) of the 14
# candidate sources, one figure per target and one panel per metric, with a least-squares line and the weighted
# τ above each panel, like [D]'s scatter figure.

# %% tags=["hide-input"]
scores_dataset = R.load_all_scores("dataset", ref)
truth_dataset = R.load_ground_truth("dataset", ref)
for target in truth_dataset.columns:
    fig = E.scatter_target(scores_dataset, truth_dataset, target, labels=L, ncols=4, panel=1.8)
    plt.show()

# %% [markdown]
# **Figure 3.** Score (x) against fine-tuned test AUC (y) over the 14 candidate sources, one figure per target
# and one panel per metric, dataset scenario; red: least-squares fit; panel title: the metric and its weighted
# τ. SFDA's columns for
# BreastMNIST and PneumoniaMNIST are a single vertical line of points (every score 1.0), hence NaN. In
# several panels (FU and LP x FU especially) one or two sources lie far from the rest, and the AUCs of the
# sources often span only one or two points, so a single source can decide both the fit and the τ.

# %% [markdown]
# ## Re-deriving the ground truth from the sweep logs
# [D] published every fine-tuning run of its hyperparameter sweep (`finetuned_AUCs/`), not only the chosen
# AUC. For each (source, target) the ground truth takes the run with the **lowest validation loss** and
# reports its test AUC. We rebuild both ground-truth tables that way and compare them cell by cell with
# `AUCs_dataset.csv` and `AUCs_model.csv`. For architectures, the `_imnet` sweeps hold eight of the nine
# architectures; the ResNet18 row is the ImageNet source of the dataset sweep. Runs that FAILED or were
# still RUNNING carry no metrics and are skipped.

# %% tags=["hide-input"]
derived_check = []
for scen in R.SCENARIOS:
    runs = pd.concat([R.load_sweep(t, scen, ref, finished_only=False) for t in R.TARGETS])
    derived = R.derive_ground_truth(scen, "min_val_loss", ref)
    published = R.load_ground_truth(scen, ref)
    diff = R.compare_tables(derived, published, atol=1e-9)
    both = derived.notna() & published.reindex_like(derived).notna()
    derived_check.append({"scenario": scen, "runs logged": len(runs),
                          "runs with metrics": int(runs[["val_loss", "test_auc"]].notna().all(axis=1).sum()),
                          "cells compared": int(both.to_numpy().sum()), "cells that differ (>1e-9)": len(diff),
                          "max |difference|": float((derived - published.reindex_like(derived)).abs().max().max())})
pd.DataFrame(derived_check).set_index("scenario")

# %% [markdown]
# Both published ground-truth tables are reproduced exactly from the logs (the architecture table up to the
# 1e-14 rounding of its conversion to percent): the selection rule is the one [D] describes, with no cell
# that differs.

# %% [markdown]
# ## Other selection rules and bootstrap intervals
# Picking one run by its validation loss is one reasonable rule among several. Validation sets in [D] hold
# 25 images per class, so the choice is noisy. We re-derive the ground truth with three alternatives: the run
# with the highest validation AUC, and the mean test AUC of the three best runs by validation loss or by
# validation AUC. First, how much does the ground truth itself move?

# %% tags=["hide-input"]
agreement = pd.concat({scen: R.ground_truth_agreement(scen, ref_dir=ref) for scen in R.SCENARIOS}, names=["scenario"])
agreement

# %% [markdown]
# `kendall_tau_vs_D` is the Kendall τ between each rule's ranking of the sources and [D]'s, averaged over
# targets; `targets_best_source_changes` counts the targets whose best source is a different one. The next
# table recomputes every metric's mean weighted τ under each rule, with the metric's rank among the nine
# (1 = best) in brackets.

# %% tags=["hide-input"]
rules_long = pd.concat([R.rule_comparison(scen, ref_dir=ref) for scen in R.SCENARIOS], ignore_index=True)
rule_means = rules_long.groupby(["scenario", "rule", "metric"], sort=False)["weighted_tau"].mean().unstack("rule")
rule_ranks = rule_means.groupby(level="scenario", group_keys=False).rank(ascending=False).astype(int)
rule_table = rule_means.map("{:.3f}".format) + " (" + rule_ranks.astype(str) + ")"
rule_table.rename(index=L, level="metric")

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for ax, scen in zip(axes, R.SCENARIOS):
    rk = rule_ranks.loc[scen]
    for m in rk.index:
        ax.plot(range(rk.shape[1]), rk.loc[m], marker="o", label=L[m])
    ax.set_xticks(range(rk.shape[1]), rk.columns, rotation=20, fontsize=8)
    ax.set_title(f"{scen} transferability", fontsize=10)
    ax.invert_yaxis()
axes[0].set_ylabel("rank of mean weighted τ (1 = best)")
axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
fig.suptitle("Rank of each metric under four ground-truth selection rules", fontsize=11)
fig.tight_layout()

# %% [markdown]
# **Figure 4.** Rank of each metric's mean weighted τ (1 = best) when the ground truth is selected by lowest
# validation loss ([D]), highest validation AUC, or the mean of the three best runs by either criterion.
# Crossing lines are metrics that trade places when nothing but the selection rule changes. LP x FU stays
# first on datasets and LEEP first on architectures under every rule, and NCTI and SFDA stay near the
# bottom; the middle of the ranking (LogME, LEEP, PARC, NLEEP, LP, FU on datasets; NLEEP, LP, FU, SFDA on
# architectures) reorders by up to four places. All means rise on datasets when the rule averages three
# runs, which is what one expects when the ground truth gets less noisy.
#
# The ranks alone do not say whether a difference is larger than the noise of 14 (or 9) sources. We
# bootstrap the sources: each replicate redraws, per target, the candidate sources with replacement (the
# same draw for every metric) and recomputes the mean weighted τ. The table gives the 95 % percentile
# interval, the average rank over replicates and the share of replicates in which the metric is the best.

# %% tags=["hide-input"]
boots = {}
for scen in R.SCENARIOS:
    boots[scen] = E.bootstrap_means(R.load_all_scores(scen, ref), R.load_ground_truth(scen, ref),
                                    n_boot=n_boot, seed=seed)
boot_table = pd.concat(boots, names=["scenario"]).rename(index=L, level="metric")
boot_table

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, scen in zip(axes, R.SCENARIOS):
    E.interval_plot(boots[scen], labels=L, title=f"{scen} transferability", ax=ax)
fig.suptitle(f"Mean weighted τ with 95 % bootstrap intervals ({n_boot} replicates over sources)", fontsize=11)
fig.tight_layout()

# %% [markdown]
# **Figure 5.** Mean weighted τ over targets (dot) with its 95 % percentile bootstrap interval over sources
# (bar), dataset scenario left, architecture scenario (with [D]'s flips) right; dotted line: τ = 0.
# The intervals of most metrics overlap widely: on the dataset scenario LP x FU leads in most replicates,
# but its interval overlaps those of LP, NLEEP and FU; on the architecture scenario every interval is wide
# and several include zero.

# %% [markdown]
# ## What [D] did not report: top-1 accuracy and regret
# A practitioner uses a metric to pick *one* source. The relevant questions are then: how good is the source
# the metric ranks first (its fine-tuned AUC divided by the best source's, "top-1 relative"), and how much
# AUC is lost against the best source ("regret", in AUC points ×100 below). When several sources tie for the
# top score (SFDA at 1.0), the value is the average over them: the expected outcome of picking one at random.

# %% tags=["hide-input"]
practical = pd.concat({scen: E.practical_summary(long[long.scenario == scen]) for scen in R.SCENARIOS},
                      names=["scenario"]).rename(index=L, level="metric")
practical_view = practical.copy()
for c in ("regret_mean", "regret_median", "regret_max"):
    practical_view[c] = 100 * practical_view[c]
practical_view.rename(columns={"regret_mean": "regret mean (AUC ×100)", "regret_median": "regret median",
                               "regret_max": "regret worst", "top1_relative_mean": "top-1 relative (mean)",
                               "top1_is_best": "targets where top-1 is best (expected)"})

# %% tags=["hide-input"]
regret = E.wide(long[long.scenario == "dataset"], "regret").rename(columns=L) * 100
fig, ax = plt.subplots(figsize=(8, 4.2))
im = ax.imshow(regret.to_numpy(), cmap="Reds", aspect="auto")
ax.set_xticks(range(regret.shape[1]), regret.columns, rotation=30, fontsize=8)
ax.set_yticks(range(regret.shape[0]), [t.replace("mnist", "") for t in regret.index], fontsize=8)
for i in range(regret.shape[0]):
    for j in range(regret.shape[1]):
        v = regret.iat[i, j]
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6,
                color="white" if v > 0.6 * regret.max().max() else "black")
fig.colorbar(im, ax=ax, label="regret (test AUC ×100)")
ax.set_title("AUC lost by fine-tuning the top-scored source instead of the best (dataset scenario)", fontsize=10)
fig.tight_layout()

# %% [markdown]
# **Figure 6.** Regret per target (rows) and metric (columns) in the dataset scenario: the test AUC (×100)
# of the best source minus that of the source each metric scores highest. Zero means the metric picked the
# best source. The loss concentrates on a few targets where the sources differ by several AUC points:
# OCTMNIST (most metrics pick a source 4.3 points below the best), BreastMNIST, DermaMNIST and
# PneumoniaMNIST; SFDA's tie at 1.0 on RetinaMNIST costs 12 points in expectation. On targets such as
# BloodMNIST or PathMNIST every source is within a point, so even a poor ranking costs little.

# %% [markdown]
# ## Summary
# - Our correlation code reproduces all 16 published mean weighted τ values of [D] to the third decimal,
#   from the published tables, and the per-target values are stored in
#   `results/reference/dovile2024_weighted_tau.csv`.
# - Two details were needed: LP x FU is min-max normalised over the whole published column (.523; over
#   the candidates only it would be .522), and the architecture numbers require negating LEEP, PARC, NCTI,
#   NLEEP, LP and FU but not LogME or SFDA, a choice that turns negative correlations positive.
# - SFDA's NaNs come from scores saturated at exactly 1.0 on binary targets; NCTI's published values reach
#   3.0, which only the `+ vc` sign defect allows.
# - The ground truth follows exactly from the sweep logs with the lowest-validation-loss rule. Other
#   reasonable rules and a bootstrap over sources show that the differences between most metrics are within
#   the noise of 14 sources and 11 targets.
# - Regret puts the correlations in AUC terms: trusting a metric's top choice costs on average about half an
#   AUC point for LP x FU, FU and LEEP and up to 3.3 points for SFDA (dataset scenario), concentrated on a
#   few targets.
#
# ## What's next
# The same `helpers.evaluation` functions take any score table and ground-truth table indexed by source with
# one column per target: apply them to your own scores, or to the scores and fine-tuned ground truth that this
# book's own stages produce, with the defects above fixed, and compare the outcome with the numbers reproduced
# here.

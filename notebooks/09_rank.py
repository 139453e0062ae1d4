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
# # Choose a model for your data
#
# ## Overview
# The question a medical-imaging researcher brings to this field is: *which of these pre-trained models should
# I fine-tune on my data?* The earlier chapters answer it for the paper's MedMNIST targets through profiles and
# stages. This chapter answers it directly for a target this project has never seen, with
# `helpers.rank`: point it at a folder of labelled images and a list of candidate models, and it extracts
# features once per candidate, computes every applicable transferability metric and the baselines a reader
# needs to judge them, ranks the candidates per metric, and combines the ranks into one recommendation with a
# bootstrap interval over the target images.
#
# The target here is breast ultrasound from BUSI {cite}`aldhabyani2020busi` (benign against malignant lesions,
# the image-level labels of the segmentation data), written as a folder with one sub-folder per class, exactly
# what a user would point the tool at. The candidates are this project's trained sources, random
# initialisation, a checkpoint file as a colleague would send it, and an ImageNet model (which this offline
# machine cannot download, so it is reported as unavailable).
#
# 1. The target and the candidates
# 2. The ranking
# 3. Why this combination: the default recommendation and the public evidence it rests on
# 4. How stable is the recommendation?
# 5. What each metric costs
# 6. The recommendation against fine-tuning (MedMNIST targets with a ground truth)
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | [Pretraining chapter](02_pretraining) | Necessary | the project's sources (`results/<profile>/sources`) |
# | [Scoring chapter](04_scoring) | Helpful | what each metric is and how set-level scores normalise |
# | [Fine-tuning chapter](03_finetuning) | Helpful | the ground truth of the last section |
#
# - **Time to run**: about two minutes on the quick profile (2-core CPU); seconds when the features are cached.
#
# The same ranking from a shell:
#
# ```bash
# python -m helpers.rank --target my_images/ --candidates breastmnist,resnet18:random@28,resnet50 \
#     --out ranking.csv
# ```

# %% tags=["parameters", "hide-input"]
profile = "quick"   # profile name: its trained sources (results/<profile>/sources) are candidates by name
target = None       # a folder, .npz, .csv or MedMNIST flag; None: BUSI written as an image folder (below)
candidates = None   # list or comma-separated string; None: the project's sources, random, a .pt file, ImageNet
max_images = 2000   # target images used (a seeded class-stratified subset when there are more)
metrics = None      # None: every metric that applies, the baselines and the set-level scores
n_boot = 100        # bootstrap replicates over the target images
compare_truth = True  # also rank the profile's sources on its MedMNIST targets and compare with fine-tuning
compare_max_images = 96   # images per target for that comparison (None: all of fold 1's training subset)
data_root = None    # None: $DATA_ROOT, else data/
device = None       # None: the profile's device (auto: cuda when present)

# %% [markdown]
# ## Imports

# %% tags=["hide-input"]
# %matplotlib inline
import os

# Passive OpenMP waiting: on a CPU shared with other work, spinning threads slow the work several-fold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

pd.set_option("display.max_colwidth", 120)

from helpers import booktext
from helpers import evaluation as E
from helpers import rank as R
from helpers.rank.default import derive_rank_default
from helpers.paths import results_root
from helpers.profiles import load_profile, profile_targets, resolve_device
from helpers.stages.pretraining import sources_dir

# %% tags=["hide-input"]
cfg = load_profile(profile)
out = results_root(cfg["name"]) / "rank"
out.mkdir(parents=True, exist_ok=True)
device = device or resolve_device(cfg)
sources = sources_dir(results_root(cfg["name"]))
trained = sorted(p.stem for p in sources.glob("*.safetensors"))
print(f"profile {cfg['name']!r}, device {device}; trained sources in {sources}: {trained}")

# %% [markdown]
# ## The target and the candidates
# BUSI's 452 training images with their benign / malignant label become `results/<profile>/rank/busi/benign/*.png`
# and `.../malignant/*.png` (128 px grayscale, BUSI's own file names). BreastMNIST {cite}`yang2023medmnist` was
# made from the same BUSI images (downsized to 28 px, with the normal images BUSI's segmentation copy lacks), so
# the `breastmnist` source has seen these very images during pretraining: the target is new to the tool but not
# to that source, and it is expected to rank well. Whether it does is the first thing to look at.
#
# A candidate is a string: a trained source by name (`breastmnist`), a torchvision architecture with ImageNet
# weights (`resnet18`) or random ones (`resnet18:random`), a checkpoint file with its architecture
# (`resnet18:path/to/file.pt`), or a timm model (`timm:NAME`, with the optional `timm` package); `@SIZE` sets the
# input size. The colleague's file below is the project's leave-BreastMNIST-out union source (trained on
# PneumoniaMNIST and RetinaMNIST) saved as a plain PyTorch state dict: a bare `.pt` says neither its
# architecture nor its input size, so both are given (`resnet18:...@28`). Random initialisation runs at 28 px like
# the sources, to compare like with like (and to fit a CPU).

# %%
if target is None:
    target = R.write_busi_folder(out / "busi", split="train", root=data_root)
colleague = out / "colleague_resnet18.pt"
union_wo_breast = sources / "medmnist_union__breastmnist.safetensors"
if not colleague.is_file() and union_wo_breast.is_file():
    from helpers.models import read_state_dict

    torch.save(read_state_dict(union_wo_breast), colleague)
if candidates is None:
    own = [s for s in ("breastmnist", "pneumoniamnist", "retinamnist", "medmnist_union__retinamnist")
           if s in trained]
    candidates = own + ["resnet18:random@28", f"resnet18:{colleague}@28", "resnet18"]
candidates = [c.strip() for c in candidates.split(",")] if isinstance(candidates, str) else list(candidates)
spec = R.load_target(target, max_images=max_images, data_root=data_root)

# %% tags=["hide-input"]
booktext.glue(target_name=spec.name, target_description=spec.description,
              target_class_counts=str(spec.class_counts()))

# %% [markdown]
# **Target** {glue:text}`target_name`: {glue:text}`target_description`. Images per class:
# {glue:text}`target_class_counts`.

# %% tags=["hide-input"]
display(pd.DataFrame([{"candidate": c.name, "kind": c.kind, "architecture": c.arch or "(from its sidecar)",
                       **{k: v for k, v in R.preprocessing(c).items()}} for c in
                      R.parse_candidates(candidates, sources)]).set_index("candidate"))

# %% [markdown]
# **Table 1.** The candidates and the input each one gets: the size and the normalisation (ImageNet mean and
# standard deviation for ImageNet weights, 0.5 / 0.5 for everything else), applied on the device to the same
# target images.

# %% [markdown]
# ## The ranking
# `rank_models` runs every candidate on the target. Features and FU are cached under
# `results/<profile>/rank/cache`, keyed by the weights, the target images and the input convention, so
# running this chapter again recomputes only the metrics.

# %%
result = R.rank_models(spec, candidates, metrics=metrics, n_boot=n_boot, device=device,
                       cache_dir=out / "cache", sources_dir=sources, progress=False)
result.write(out / "ranking.csv")
rec = result.recommendation
cols = ["name", "status", "score", "rank", "p_first", "rank_low", "rank_high", "reason"]
display(rec[cols].rename(columns={"score": "mean rank"}).style.format(
    {"mean rank": "{:.2f}", "rank": "{:.1f}", "p_first": "{:.2f}", "rank_low": "{:.0f}", "rank_high": "{:.0f}"},
    na_rep="").hide(axis="index"))

# %% tags=["hide-input"]
booktext.glue(recommend_metrics=", ".join(result.settings["recommend"]), n_boot=n_boot)

# %% [markdown]
# **Table 2.** The recommendation, best first: the mean rank over {glue:text}`recommend_metrics` (1 = best),
# `p_first` the share of {glue:text}`n_boot` bootstrap replicates that rank the candidate first, and its 95 % rank
# interval. Candidates that could not be had here keep a row with the reason.

# %% [markdown]
# The recommendation is the mean rank over the default metrics, `helpers.rank.DEFAULT_RECOMMEND` =
# {glue:text}`rank_default` (a user's `recommend=` or `--recommend` replaces them). A mean of ranks needs no
# common scale between the metrics and lets none dominate. Which metrics the default holds is derived from the
# public benchmarks, as the next section shows. Every metric's own ranking is below.

# %% tags=["hide-input"]
booktext.glue(rank_default=", ".join(R.DEFAULT_RECOMMEND))

# %% tags=["hide-input"]
ranks = result.wide("rank")
ok_names = rec.loc[rec["status"] == "ok", "name"]
ranks = ranks.loc[[n for n in ranks.index if n in set(ok_names)], [m for m in ranks.columns if m != R.RECOMMENDATION]]
ranks = ranks.dropna(axis=1, how="all")
display(ranks.style.format("{:.1f}", na_rep="-")
        .background_gradient(axis=0, cmap="viridis_r"))

# %% [markdown]
# **Table 3.** Rank of each available candidate (rows, in recommendation order) by each metric (columns; 1 = best
# in the metric's own direction, ties share the average rank; brighter = better). `num_params` and
# `imagenet_top1` do not look at the target: they are the naive 'bigger is better' and 'better on ImageNet is
# better' baselines (`imagenet_top1` exists only for torchvision ImageNet weights, from their metadata).

# %% tags=["hide-input"]
on_target = ranks.drop(columns=list(R.AGNOSTIC), errors="ignore")
lead = next((m for m in result.settings["recommend"] if m in on_target), on_target.columns[0])
agree = on_target.corrwith(on_target[lead], method="kendall")
firsts = on_target.idxmin().value_counts()
best = result.best
bm = rec[rec["name"] == "breastmnist"]
booktext.glue(
    first_metric=firsts.index[0], first_count=int(firsts.iloc[0]), n_on_target=on_target.shape[1], lead=lead,
    agree_min=f"{agree.drop(lead).min():.2f}", agree_max=f"{agree.drop(lead).max():.2f}",  # NaN with one metric
    verdict=result.verdict().replace("`", ""),  # plain text: the glued value shows no code spans
    breast_clause=(f" The breastmnist source, which saw these images in pretraining, is ranked "
                   f"{bm['rank'].iloc[0]:.0f} of {len(ok_names)} (first in {bm['p_first'].iloc[0]:.0%} of the "
                   f"replicates)." if len(bm) and bm["status"].iloc[0] == "ok" else ""))

# %% [markdown]
# The metrics disagree: {glue:text}`first_metric` is ranked first by {glue:text}`first_count` of the
# {glue:text}`n_on_target` metrics that look at the target, and the Kendall correlation between a metric's ranking
# and {glue:text}`lead`'s ranges from {glue:text}`agree_min` to {glue:text}`agree_max`. That disagreement is the
# reason to choose the recommendation's metrics by their evidence against fine-tuning (next section) and to look
# at the interval rather than trust one number.
#
# {glue:text}`verdict`{glue:text}`breast_clause`

# %% [markdown]
# ## Why this combination
# The default metrics are not picked by hand: `helpers.rank.default.derive_rank_default` derives them from
# the public benchmarks of the [Evidence chapter](11_evidence), medical classification targets first, and
# `helpers/rank/evidence.py` records the result with the evidence it rests on (a test re-derives it from
# `data/reference/` and fails if the two differ). For every metric `helpers.rank` computes, a benchmark's scorer
# counts only where it is the same score in the same sign: [D]'s architecture scores are correlated as published,
# without the sign flips of [D]'s notebook, because `helpers.rank` does not flip them; [D]'s NCTI (published with a
# sign bug), scores `helpers.metrics` does not have, segmentation scores and task distances are listed as unmapped.
# Per (benchmark, scenario) the mean weighted τ against fine-tuning is taken under the paper's own convention, the
# units are averaged within their research group and the groups with equal weight (the Evidence chapter's pooling),
# and resampling the targets of every unit gives a 95 % interval. The rule:
#
# 1. medical evidence first; natural targets count only where no metric has medical evidence;
# 2. eligible: metrics that score the candidates' features on the target, evaluated on medical targets by at
#    least two independent research groups (one group's benchmarks share data and protocol);
# 3. chosen: the eligible metric with the best pooled value, and every eligible metric with a positive value
#    inside its 95 % interval (an overlap of intervals is not enough: a metric seen on three targets has an
#    interval wide enough to overlap anything);
# 4. the target-agnostic baselines (ImageNet top-1, parameter count) are the bar shown beside the recommendation,
#    not part of it: they exist only for torchvision ImageNet weights and cannot separate candidates of one
#    architecture;
# 5. a metric that no public benchmark has scored is left out: averaging in its rank would give an unchecked
#    metric the weight of the checked ones.

# %% tags=["hide-input"]
derived = derive_rank_default()
ev = derived.table
recorded = {k: v for k, v in R.EVIDENCE.items() if k != "derived_on"}
matches = derived.chosen == R.DEFAULT_RECOMMEND and {k: v for k, v in derived.stamp.items()
                                                      if k != "derived_on"} == recorded
show = ev.assign(interval=[f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else "" for lo, hi in
                           zip(ev["ci_low"], ev["ci_high"])])
show = show[["metric", "chosen", "tier", "tau", "interval", "n_groups", "n_targets", "benchmarks", "natural_tau",
             "why"]].rename(columns={"chosen": "in default", "tier": "evidence", "tau": "mean weighted τ",
                                     "n_groups": "groups", "n_targets": "rankings",
                                     "natural_tau": "natural τ (not used)"})
display(show.style.format({"mean weighted τ": "{:.3f}", "natural τ (not used)": "{:.3f}"}, na_rep="")
        .hide(axis="index"))
ix = ev.set_index("metric")
top = derived.chosen[0]
u = derived.units.set_index(["unit", "metric"])["mean"]
med_units = derived.units.loc[derived.units["domain"] == "medical", "unit"].unique()
none = ix.index[ix["tier"] == "none"].tolist()
booktext.glue(
    n_medical_units=str(len(med_units)),
    medical_benchmarks=", ".join(sorted(derived.units.loc[derived.units["domain"] == "medical", "benchmark"].unique())),
    default_top=top, default_top_tau=f"{ix.at[top, 'tau']:.3f}",
    default_top_ci=f"[{ix.at[top, 'ci_low']:.3f}, {ix.at[top, 'ci_high']:.3f}]",
    default_top_groups=str(int(ix.at[top, "n_groups"])), default_top_rankings=str(int(ix.at[top, "n_targets"])),
    default_top_units=", ".join(f"{k.rsplit('/', 1)[0]} {v:.3f}" for (k, m), v in u.items() if m == top
                                and k in med_units),
    lpfu_dataset=f"{u[('dovile2024/dataset/medical', 'lp_fu')]:.3f}",
    lpfu_architecture=f"{u[('dovile2024/architecture/medical', 'lp_fu')]:.3f}",
    lpfu_pooled=f"{ix.at['lp_fu', 'tau']:.3f}", lpfu_groups=str(int(ix.at["lp_fu", "n_groups"])),
    default_others=("no other eligible metric's value lies inside its interval" if len(derived.chosen) == 1 else
                    f"{', '.join(derived.chosen[1:])} lie inside its interval and join it"),
    no_evidence=", ".join(none),
    evidence_hash=R.EVIDENCE["content_sha256"], evidence_date=R.EVIDENCE["derived_on"])
agn = ix.loc[[m for m in R.AGNOSTIC if m in ix.index and ix.at[m, "tier"] == "medical"]]
booktext.glue(
    evidence_n_boot=derived.stamp["n_boot"], n_unmapped=len(derived.unmapped),
    n_unmapped_benchmarks=derived.unmapped["benchmark"].nunique(),
    default_matches=("equals this derivation" if matches else
                     "DIFFERS from this derivation: update helpers/rank/evidence.py"),
    agnostic_sentence=(" The target-agnostic baselines reach "
                       + ", ".join(f"{v:.3f} ({m})" for m, v in agn["tau"].items())
                       + f" on medical targets, {'above' if agn['tau'].max() > ix.at[top, 'tau'] else 'below'} the "
                       f"default's {ix.at[top, 'tau']:.3f}: they are the bar the recommendation has to clear (Table 3 "
                       "shows them)." if len(agn) else ""))

# %% [markdown]
# **Table 4.** Every metric `helpers.rank` computes, with its public evidence: the pooled mean weighted τ against
# fine-tuning over the medical units (or the natural ones where it has no medical evidence), its 95 % interval from
# {glue:text}`evidence_n_boot` bootstrap replicates over targets, the research groups and (unit, target) rankings
# behind it, and why the rule put it in the default or not. {glue:text}`n_unmapped` scorers of
# {glue:text}`n_unmapped_benchmarks` benchmarks are evidence for none of these metrics
# (`derive_rank_default().unmapped` says why for each). The recorded default (`helpers.rank.evidence`)
# {glue:text}`default_matches`.{glue:text}`agnostic_sentence`

# %% [markdown]
# The default is {glue:text}`rank_default`. Of the metrics that at least two research groups evaluated on the
# {glue:text}`n_medical_units` medical units ({glue:text}`medical_benchmarks`), {glue:text}`default_top` comes out
# best: mean weighted τ {glue:text}`default_top_tau` (95 % interval {glue:text}`default_top_ci`) over
# {glue:text}`default_top_rankings` (unit, target) rankings from {glue:text}`default_top_groups` groups, per unit
# {glue:text}`default_top_units`; {glue:text}`default_others`. The previous default was led by
# [D]'s LP x FU, which only [D]'s group has evaluated ({glue:text}`lpfu_groups` group): {glue:text}`lpfu_dataset`
# when the candidates are source data sets, {glue:text}`lpfu_architecture` when they are architectures (as
# `helpers.rank` computes it; [D]'s published architecture figure flips the sign), {glue:text}`lpfu_pooled` pooled.
# It stays in the table, and `recommend=["lp_fu"]` uses it.
#
# The gap: {glue:text}`no_evidence` have no public evidence. No public benchmark scored k-NN accuracy or the linear
# probe against fine-tuning, so the rule leaves them out of the default rather than give them the weight of
# checked metrics; they are still computed (Table 3), and `recommend=` or `--recommend` adds them. Every ranking
# records what its recommendation rests on in `settings["recommend_basis"]` (the benchmarks, their source
# commits, the content hash {glue:text}`evidence_hash` of the tables used, the rule and the date
# {glue:text}`evidence_date`), written to `<out>_target.json` and printed by the command; with the user's own
# metrics it says "user's choice".

# %% [markdown]
# ## How stable is the recommendation?
# Each bootstrap replicate resamples the target images with replacement (within each class), recomputes the
# recommendation's metrics on them for every candidate, and re-ranks. Metrics that take features (LogME and the
# other pairwise scores) are recomputed on the resampled features; k-NN accuracy, the linear probe and LP are
# means of per-image terms (a leave-one-out vote, a held-out prediction, a neighbourhood probability), so a
# replicate averages those terms over the resampled images; FU enters LP x FU unchanged (it needs the model and
# a backward pass). The interval therefore says how much the ranking depends on *which* images were scored, not
# how fine-tuning itself would vary.

# %% tags=["hide-input"]
ok = rec[rec["status"] == "ok"].iloc[::-1]
fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(ok) + 1.2), sharey=True)
y = np.arange(len(ok))
axes[0].barh(y, ok["p_first"], color="tab:green")
axes[0].set_xlim(0, 1)
axes[0].set_xlabel("P(ranked first)")
axes[0].set_yticks(y, ok["name"])
axes[1].hlines(y, ok["rank_low"], ok["rank_high"], color="tab:blue", lw=3, alpha=0.5)
axes[1].plot(ok["rank"], y, "o", color="tab:blue")
axes[1].set_xlabel("rank (1 = best)")
axes[1].set_xlim(0.5, len(ok) + 0.5)
axes[1].invert_xaxis()
fig.tight_layout()
plt.show()

# %% [markdown]
# **Figure 1.** Left: the share of the {glue:text}`n_boot` replicates in which each candidate is ranked first.
# Right: its rank on all images (dot) and the 95 % bootstrap interval of its rank (bar; 1 = best, at the right).

# %% tags=["hide-input"]
boot_metrics = [m for m in result.settings["recommend"] if m in set(result.table["metric"])]
fig, axes = plt.subplots(1, len(boot_metrics), figsize=(3.6 * len(boot_metrics), 0.45 * len(ok) + 1.2),
                         sharey=True, squeeze=False)
for ax, m in zip(axes[0], boot_metrics):
    g = result.table[(result.table["metric"] == m)].set_index("name").reindex(ok["name"])
    ax.hlines(y, g["ci_low"], g["ci_high"], color="tab:orange", lw=3, alpha=0.5)
    ax.plot(g["score"], y, "o", color="tab:orange")
    ax.set_title(m)
    ax.set_yticks(y, ok["name"])
fig.tight_layout()
plt.show()
booktext.glue(boot_metrics=", ".join(boot_metrics),
              lpfu_note=(" LP x FU is min-max normalised across the candidates, so the worst candidate on LP or FU "
                         "sits at 0." if "lp_fu" in boot_metrics else ""))

# %% [markdown]
# **Figure 2.** The score of each candidate (dot) on every metric of the recommendation
# ({glue:text}`boot_metrics`), with its 95 % bootstrap interval (bar); higher is better for
# each.{glue:text}`lpfu_note`

# %% [markdown]
# ## What each metric costs
# Seconds per candidate on this machine: feature extraction is shared by every metric; FU needs its own
# forward and backward passes; set-level scores include their per-candidate parts, and the recommendation
# the time of its metrics and of the bootstrap.

# %% tags=["hide-input"]
tab = result.table[result.table["status"] == "ok"]
secs = tab.groupby("metric")["seconds"].mean().drop(["num_params", "imagenet_top1"], errors="ignore")
ext = result.candidates.loc[result.candidates["status"] == "ok", "extract_seconds"].mean()
secs = pd.concat([secs, pd.Series({"(feature extraction)": ext})]).sort_values()
fig, ax = plt.subplots(figsize=(6, 0.28 * len(secs) + 1))
secs.plot.barh(ax=ax, color=["tab:gray" if i == "(feature extraction)" else "tab:blue" for i in secs.index])
ax.set_xscale("log")
ax.set_xlabel("seconds per candidate, mean (log scale)")
fig.tight_layout()
plt.show()
booktext.glue(device=str(device), n_target_images=len(spec))

# %% [markdown]
# **Figure 3.** Mean seconds per candidate for each metric on {glue:text}`device` with
# {glue:text}`n_target_images` target images (feature extraction in grey, measured when the features were
# computed, not read from the cache).

# %% [markdown]
# ## The recommendation against fine-tuning
# For BUSI there is no ground truth: nobody fine-tuned these candidates on it. The project's MedMNIST targets
# have one (`results/<profile>/ground_truth.csv`, from the Fine-tuning chapter), so the same tool can be checked
# there: for each target, rank the profile's sources (the target's own source left out, its leave-target-out
# union in, at the fine-tuning input size) on the images they were fine-tuned on (fold 1's train subset, at
# most `compare_max_images` of them: several metrics cost more than linearly in the images, and this check
# has to fit the quick book's budget), and compare each ranking with the fine-tuned test AUC by the weighted
# Kendall τ of the Correlation chapter.

# %% tags=["hide-input"]
NA = "—"  # what the text shows where there is no comparison
truth_path = results_root(cfg["name"]) / "ground_truth.csv"
truth = pd.read_csv(truth_path, index_col="source") if truth_path.is_file() else None
have_truth = compare_truth and truth is not None
if not have_truth:
    booktext.glue(truth_note=("No comparison: switched off (compare_truth = False). " if not compare_truth else
                              f"No comparison: {truth_path} does not exist; run the Fine-tuning chapter first. "),
                  truth_max_sources=NA)
else:
    runs, names = {}, {}
    n_ft = cfg.get("finetuning", {}).get("max_train_images")
    if compare_max_images is not None:
        n_ft = min(int(compare_max_images), int(n_ft)) if n_ft else int(compare_max_images)
    for t in [t for t in profile_targets(cfg, data_root) if t in truth.columns]:
        cands = R.profile_candidates(cfg, t)
        names.update(cands)
        runs[t] = R.rank_models(t, list(cands), metrics=metrics, max_images=n_ft, n_boot=n_boot, device=device,
                                cache_dir=out / "cache", sources_dir=sources, data_root=data_root,
                                progress=False)
    tables = R.ranking_tables(runs, names)
    long = E.tidy(E.correlate_many(tables, truth, exclude_self=True))
    wt = E.wide(long, "weighted_tau")
    order = [R.RECOMMENDATION] + [m for m in wt.columns if m != R.RECOMMENDATION]
    wt = wt[[m for m in order if m in wt.columns]]
    display(wt.T.assign(mean=wt.mean()).style.format("{:.2f}", na_rep="NaN")
            .background_gradient(axis=None, cmap="RdBu", vmin=-1, vmax=1))
    booktext.glue(truth_note="", truth_max_sources=int(long["n_sources"].max()))

# %% [markdown]
# {glue:text}`truth_note`**Table 5.** Weighted τ between each metric's ranking (rows; `recommendation` = the
# combined mean rank) and the fine-tuned test AUC per target (columns), over the {glue:text}`truth_max_sources` or
# fewer sources available per target. Blue = agrees with fine-tuning. NaN: the metric gave every source the same
# score.

# %% tags=["hide-input"]
if have_truth:
    side = []
    for t, res in runs.items():
        r = res.recommendation[res.recommendation["status"] == "ok"]
        for row in r.itertuples():
            side.append({"target": t, "source": names[row.candidate], "recommended rank": row.rank,
                         "P(first)": row.p_first, "fine-tuned AUC": truth.loc[names[row.candidate], t]})
    side = pd.DataFrame(side)
    side["fine-tuned rank"] = side.groupby("target")["fine-tuned AUC"].rank(ascending=False)
    display(side.style.format({"recommended rank": "{:.1f}", "P(first)": "{:.2f}", "fine-tuned AUC": "{:.3f}",
                               "fine-tuned rank": "{:.1f}"}).hide(axis="index"))

# %% [markdown]
# **Table 6.** Per target, each source's recommended rank and P(first) beside its fine-tuned test AUC and rank.
# The `imagenet` source is unavailable offline and has neither.

# %% tags=["hide-input"]
if have_truth:
    rec_wt = wt[R.RECOMMENDATION] if R.RECOMMENDATION in wt else pd.Series(dtype=float)
    hits = int((long[long["metric"] == R.RECOMMENDATION]["top1_relative"] == 1).sum())
    best_metric = wt.mean().drop(R.RECOMMENDATION, errors="ignore").idxmax()
    per_target_sources = long.groupby("target")["n_sources"].max()
    booktext.glue(
        rec_taus=", ".join(f"{v:.2f} ({k})" for k, v in rec_wt.items()), rec_mean=f"{rec_wt.mean():.2f}",
        rec_hits=hits, n_truth_targets=len(rec_wt), truth_best_metric=best_metric,
        truth_best_mean=f"{wt[best_metric].mean():.2f}", truth_best_n=int(wt[best_metric].notna().sum()),
        truth_sources="-".join(str(n) for n in sorted({int(per_target_sources.min()), int(per_target_sources.max())})))
else:
    booktext.glue(rec_taus=NA, rec_mean=NA, rec_hits=NA, n_truth_targets=NA, truth_best_metric=NA,
                  truth_best_mean=NA, truth_best_n=NA, truth_sources=NA)

# %% [markdown]
# The recommendation's weighted τ is {glue:text}`rec_taus` (mean {glue:text}`rec_mean`); its first choice is the
# best fine-tuned source in {glue:text}`rec_hits` of {glue:text}`n_truth_targets` targets. The single metric with
# the highest mean τ here is {glue:text}`truth_best_metric` ({glue:text}`truth_best_mean` over the
# {glue:text}`truth_best_n` targets where it ranks at all). With {glue:text}`truth_sources` sources per target, a
# few epochs of pretraining, short fine-tuning runs at 28 px and a ground truth whose reliability the Fine-tuning
# chapter measures, one swapped pair moves τ by a large amount: on the quick profile this shows how to check a
# recommendation against fine-tuning, not how good it is.

# %% [markdown]
# ## Summary
# - `helpers.rank` ranks any mix of candidates (the project's sources, torchvision architectures with ImageNet or
#   random weights, checkpoint files, timm models) on a user's own labelled images (a folder, an `.npz`, a CSV
#   of paths with one column per label, a MedMNIST flag), with every applicable metric, the baselines and one
#   combined recommendation with a bootstrap interval. The tables are in `results/<profile>/rank/`.
# - Candidates that cannot be had here (ImageNet weights offline) stay in the table with the reason.
# - On BUSI, Table 2 and Figure 1 show the recommended candidate and how often the bootstrap agrees; the metrics
#   disagree with each other (Table 3), which is why the recommendation's metrics are chosen by their public
#   evidence against fine-tuning on medical targets (Table 4), recorded with the version of that evidence in
#   every ranking's settings.
# - On the MedMNIST targets the tool scores with the Scoring chapter's own kernel (`helpers.scoring.score_model`),
#   and its recommendation can be set against fine-tuning (Tables 5 and 6); on the quick profile that comparison
#   is illustrative.
#
# ## What's next
# Run it on your own data: `python -m helpers.rank --target my_images/ --candidates ... --out ranking.csv`
# (`python -m helpers.rank --help` lists every option); from Python, `helpers.rank.rank_models` returns the same
# tables. The References page lists the works cited.

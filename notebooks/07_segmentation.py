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
# # Segmentation: CC-FV and its baselines
#
# ## Overview
# The classification chapters rank pre-trained *classifiers*. For segmentation, Yang et al. [S]
# {cite}`yang2023pick` argue that the usual metrics (LogME, TransRate, LEEP, GBC), built for one label per
# image, miss what matters for a segmenter, and propose **CC-FV**: the *class consistency* of a model's decoder
# features (the features of one structure should look alike from one case to the next) and their *feature
# variety* (features spread over the sphere rather than collapsed). This chapter builds a leave-one-out model
# bank on five public 2D sets, fine-tunes every source on every target to get the ground truth (test Dice), and
# asks how well CC-FV and the baselines rank the sources.
#
# 1. The benchmark: five 2D sets
# 2. The model bank: pre-trained sources and their fine-tuned Dice (the mean over the fine-tuning seeds)
# 3. How reliable is this ground truth? (split-half over seeds, one-seed reliability, seeds needed)
# 4. Scoring: CC-FV, its parts and the baselines
# 5. How well each score ranks the sources, beside [S]'s published means, and what the ground truth's
#    reliability allows those correlations to say
# 6. The ablations of [S] Table 2, and the official code's averaging
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | [Correlation chapter](05_correlation) | Necessary | weighted Kendall's τ, regret |
# | [Fine-tuning chapter](03_finetuning) | Helpful | the reliability of a ground truth over seeds |
# | U-Net {cite}`ronneberger2015unet` | Helpful | encoder, decoder blocks, skip connections |
# | Dice coefficient | Necessary | overlap of a predicted and a true mask, 0 to 1 |
# | 2-Wasserstein distance | Helpful | a distance between Gaussians: means and covariances |
#
# - **Time to run**: about 5 minutes on the quick profile (2-core CPU; the fine-tuning runs once per seed).

# %% tags=["parameters", "hide-input"]
profile = "quick"   # profile name (profiles/<name>.yml) or path to a profile file
data_root = None    # None: $DATA_ROOT, else data/
device = None       # None: the profile's device (auto: cuda when present)
engine = None       # the bank's tasks: None runs segmentation.side_by_side at once (the profile's); "local" or "ray"
reliability_level = 0.8  # the reliability a ground truth should reach (seeds needed are computed for it)
n_boot = 2000       # bootstrap resamplings of the sources for the one-seed reliability's interval

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
from helpers import evaluation as E
from helpers import reliability as REL
from helpers import segmentation as S
from helpers import viz
from helpers.paths import results_root
from helpers.profiles import load_profile, resolve_device
from helpers.scoring import score_tables
from helpers.segmentation import scoring as SS
from helpers.stages import segmentation as SEG

# %% tags=["hide-input"]
cfg = load_profile(profile)
sec = S.segmentation_section(cfg)
device = device or resolve_device(cfg)
out = results_root(cfg["name"])
print(f"profile {cfg['name']!r}: sets {sec['sets']}, targets {sec['targets']}, {sec['image_size']} px, "
      f"device {device}")

# %% [markdown]
# ## The benchmark: five 2D sets
# [S] used five CT tasks of the Medical Segmentation Decathlon in 3D. Here the same leave-one-out design runs on
# five public 2D sets of different modalities, resized to 128 px and read from the data root's
# `segmentation/` folder: colonoscopy polyps (Kvasir-SEG {cite}`jha2020kvasirseg`), breast ultrasound lesions
# (BUSI {cite}`aldhabyani2020busi`), dermoscopy lesions (PH2 {cite}`mendonca2013ph2`), cardiac MRI with three
# structures (ACDC {cite}`bernard2018acdc`) and H&E nuclei (MoNuSeg {cite}`kumar2017monuseg`).

# %% tags=["hide-input"]
data = {name: S.load_segmentation(name, data_root) for name in sec["sets"]}
overview = pd.DataFrame([{"set": d.name, "modality": d.info.get("modality", ""),
                          "classes": ", ".join(d.foreground_classes), "train": len(d.masks["train"]),
                          "val": len(d.masks["val"]), "test": len(d.masks["test"]),
                          "size": f"{d.image_size[0]} px"} for d in data.values()]).set_index("set")
booktext.glue(seg_image_size=int(sec["image_size"]))
overview

# %% [markdown]
# **Table 1.** The five sets: modality, foreground classes (background is class 0 everywhere), the number of
# images per split as stored, and their stored size. The model bank resizes them to
# {glue:text}`seg_image_size` px on this profile.

# %% tags=["hide-input"]
fig = viz.segmentation_grid(list(data.values()), n_images=4)
plt.show()

# %% [markdown]
# **Figure 1.** Four random training images of each set with the outlines of their masks (one colour per
# foreground class). The sets differ in modality, colour, object size and number of objects: a nucleus covers a
# few pixels, a skin lesion most of the image.

# %% tags=["hide-input"]
pix = pd.concat([d.class_pixel_table() for d in data.values()])
pix = pix[(pix["split"] == "train") & (pix["class_id"] > 0)]
(pix[["set", "class_name", "images_with_class", "images", "pixel_share"]].set_index(["set", "class_name"])
 .style.format({"pixel_share": "{:.1%}"}))

# %% [markdown]
# **Table 2.** Per foreground class of each training split: in how many images it appears and its share of all
# pixels. CC-FV samples pixels of each class in proportion to its size, so small structures get fewer samples
# (but at least a floor per case).

# %% [markdown]
# ## The model bank
# For each target set, as in [S], the candidate sources are U-Nets with a ResNet-18 encoder pre-trained on each
# of the *other* sets, one pre-trained on the union of the other sets (one joint label space: background plus
# every foreground class of each set), a randomly initialised U-Net, and a U-Net whose encoder carries ImageNet
# weights (unavailable here: the weights cannot be downloaded on this machine). Single-set sources are shared by
# every target they are a candidate for; the union source is trained once per target.

# %% tags=["hide-input"]
pre = SEG.run_segmentation_pretraining(cfg, out, root=data_root, device=device, progress=False, engine=engine)
cols = [c for c in ["source", "kind", "sets", "train_images", "val_images", "epochs_run", "best_epoch",
                    "val_loss", "val_dice", "train_seconds"] if c in pre.columns]
pre[cols].round(3).set_index("source")

# %% [markdown]
# **Table 3.** The pre-trained sources: the sets each was trained on, the images used, epochs, the epoch kept
# (best validation Dice) with its validation loss and mean foreground Dice, and the training time.
# `union__<target>` is the union of every set except that target.

# %% tags=["hide-input"]
table = S.segmentation_source_table(cfg, out)
why = table[~table["available"]].drop_duplicates("source")[["source", "reason"]]
booktext.glue(seg_unavailable="; ".join(f"{r.source}: {r.reason}" for r in why.itertuples()) or "none")
(table.pivot_table(index="source", columns="target", values="available", aggfunc="first")
 .replace({True: "yes", False: "no"}))

# %% [markdown]
# **Table 4.** The candidate sources of each target (the target itself is never its own source). Unavailable
# here: {glue:text}`seg_unavailable`.

# %% [markdown]
# ## Fine-tuning: the ground truth
# Every available source is fine-tuned on every target with a new head for the target's classes and no frozen
# layer, with Dice + cross-entropy loss, and the checkpoint with the best validation Dice is tested. Each pair is
# fine-tuned once per fine-tuning seed (`segmentation.finetuning.seeds`, this project's extension: [S] reports
# one run per pair); the seed draws the new head, the batch order and the augmentation, while the image subsets
# and the source model stay the same. The ground truth of a (source, target) pair is the mean foreground Dice on
# the target's test subset, averaged over the seeds. One call runs (or reads back) every fine-tuning unit and
# another turns the runs into the source x target ground truth. The quick profile runs two of these tasks at
# once (`segmentation.side_by_side: 2`, a local Ray cluster), each at its own two torch threads, which is what
# CPU results depend on: the runs are those of one task at a time, only sooner.

# %%
runs, unavailable = SEG.run_segmentation_finetuning(cfg, out, root=data_root, device=device, progress=False,
                                                    engine=engine)
truth = S.segmentation_ground_truth(runs)
seg_seeds = S.finetuning_seeds(sec)
booktext.glue(seg_n_seeds=len(seg_seeds), seg_seed_list=", ".join(map(str, seg_seeds)))

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(1.3 * truth.shape[1] + 2.5, 0.45 * truth.shape[0] + 1.2))
sns.heatmap(truth, annot=True, fmt=".3f", cmap="viridis", ax=ax, cbar_kws={"label": "test Dice"})
ax.set_xlabel("target")
ax.set_ylabel("source")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Figure 2.** Test Dice (mean over foreground classes, then over the {glue:text}`seg_n_seeds` fine-tuning
# seed(s) {glue:text}`seg_seed_list`) after fine-tuning each source (row) on each target (column); blank cells
# are the target itself. This is the ranking a transferability score should predict.

# %% tags=["hide-input"]
spread = pd.DataFrame({"best": truth.idxmax(), "best Dice": truth.max(), "worst": truth.idxmin(),
                       "worst Dice": truth.min(), "range": truth.max() - truth.min()})
booktext.glue(n_random=int((truth.idxmax() == "random").sum()), n_seg_targets=truth.shape[1],
              median_range=float(spread["range"].median()))
spread.round(3)

# %% [markdown]
# **Table 5.** Per target, the best and worst source and the Dice between them. A small range means the choice
# of source matters little for that target on this budget, and any score's ranking there is close to a coin
# toss.
#
# Random initialisation is the best source on {glue:text}`n_random` of the {glue:text}`n_seg_targets` targets. On
# this profile the sources are pre-trained for a few epochs on a few hundred images at 64 px, so pre-training
# has little to give and can cost more than it brings. The median gap between the best and the worst source of
# a target is {glue:text}`median_range:.3f` Dice, and neighbouring sources are often within a point or two of
# each other, the order of the noise of a test subset of at most 100 images.

# %% tags=["hide-input"]
dice_long = S.dice_long_table(runs)
multi = dice_long[dice_long["target"].isin([t for t in truth.columns if data[t].n_classes > 2])]
if len(multi):
    display(multi.pivot_table(index="source", columns=["target", "class_name"], values="dice").round(3))
else:
    print("No target of this profile has more than one foreground class.")

# %% [markdown]
# **Table 6.** Test Dice per class for the multi-structure target(s), averaged over the seeds: the mean in
# Figure 2 averages these.

# %% [markdown]
# ## How reliable is this ground truth?
# The ground truth is one measurement of each source's transfer, and a second fine-tuning seed moves it. How
# far the mean over the seeds would move under fresh seeds is measured as in the Fine-tuning chapter
# (`helpers.reliability`, same functions and conventions), per target over its candidate sources:
#
# - **split-half**: the seeds are split into two halves, each half's mean Dice per source computed, and the two
#   correlated (Pearson) over the sources, averaged over every balanced split and stepped up to the whole set
#   of seeds with the Spearman-Brown formula $2r/(1+r)$. With two seeds there is one split, seed against seed:
#   the correlation of the two runs over the sources, stepped up to their mean;
# - **one-seed reliability** $r_1$: the intraclass correlation ICC(3,1) over (source x seed), the share of the
#   variance of one run that is the source's and not the seed's, with a 90 % interval from resampling the
#   sources;
# - **seeds needed** for a reliability of `reliability_level`: the Spearman-Brown prophecy solved for the
#   number of seeds, $\lceil L(1-r_1)/(r_1(1-L)) \rceil$.
#
# A reliability $R$ caps the correlation that *any* score can reach with this ground truth at about $\sqrt{R}$;
# the ranking section below says what that means for CC-FV.

# %%
seeds_table = S.segmentation_ground_truth_seeds(runs)
rel_in = seeds_table.rename(columns={"seed": "replicate", "test_dice": "value"})[["target", "source", "replicate",
                                                                                  "value"]]
n_seg_seeds = rel_in["replicate"].nunique()
# a source counts where it has a Dice under every seed, a target where 3 such sources are left
seg_rel, n_candidates = REL.measurable_summary(rel_in, level=reliability_level, n_boot=n_boot, seed=0)
if seg_rel is not None:
    display(booktext.table(seg_rel))

# %% tags=["hide-input"]
skipped = n_candidates.reindex(truth.columns, fill_value=0)
skipped = skipped[skipped < 3]
booktext.glue(seg_rel_skipped="; ".join(f"{t} ({n} source(s) with a Dice under every seed)"
                                        for t, n in skipped.items()) or "none",
              reliability_level=reliability_level)
if seg_rel is not None:
    last, per_target_rel = seg_rel.iloc[-1], seg_rel.iloc[:-1]
    booktext.glue(seg_half=int(last["n_split"]) // 2, seg_split_text=(
                      "one split, seed against seed" if n_seg_seeds == 2 else "every balanced split of the seeds"),
                  seg_r1=f"{last['r1']:.2f}", seg_r1_low=f"{last['r1_low']:.2f}",
                  seg_r1_high=f"{last['r1_high']:.2f}", seg_now=f"{last['split_half']:.2f}",
                  seg_needed=REL.replicates_text(last["needed"]),
                  seg_worst=per_target_rel.sort_values("r1").iloc[0]["target"],
                  seg_worst_needed=REL.replicates_text(per_target_rel["needed"].max()),
                  seg_best=per_target_rel.sort_values("r1").iloc[-1]["target"])
else:
    print("One seed only, or too few candidate sources: the reliability of this ground truth cannot be measured "
          "here (it needs two seeds or more, `segmentation.finetuning.seeds`, and 3 sources).")
    booktext.glue(seg_half="—", seg_split_text="no split", seg_r1="—", seg_r1_low="—", seg_r1_high="—",
                  seg_now="—", seg_needed="—", seg_worst="—", seg_worst_needed="—", seg_best="—")

# %% [markdown]
# **Table 7.** Reliability of this profile's segmentation ground truth (the mean Dice over its
# {glue:text}`seg_n_seeds` fine-tuning seeds), per target and over all targets: `split_half` is the split-half
# reliability of a mean of `n_split` seeds (halves of {glue:text}`seg_half` seed(s) each:
# {glue:text}`seg_split_text`), `r1` the one-seed reliability with its 90 % interval (`r1_low`, `r1_high`),
# `reliability_now` that value stepped up to the seeds that ran, and `needed` the seeds for a reliability of
# {glue:text}`reliability_level`. Targets left out (fewer than 3 sources with a Dice under every seed):
# {glue:text}`seg_rel_skipped`.
#
# Over all targets one fine-tuning run has a reliability of {glue:text}`seg_r1` ({glue:text}`seg_r1_low` to
# {glue:text}`seg_r1_high`), the mean of the {glue:text}`seg_n_seeds` seeds a split-half reliability of
# {glue:text}`seg_now`, and {glue:text}`seg_needed` seeds would be needed for {glue:text}`reliability_level`.
# The least reliable target is {glue:text}`seg_worst` (it needs {glue:text}`seg_worst_needed` seeds), the most
# reliable {glue:text}`seg_best`. With as few sources as here the intervals are wide: read the per-target values
# as orders of magnitude.

# %% tags=["hide-input"]
if seg_rel is not None:
    fig = viz.reliability_plot(seg_rel, n_seg_seeds, reliability_level)
    plt.show()
else:
    print("No reliability measured on this profile: no figure.")

# %% [markdown]
# **Figure 3.** Left, per target and over all targets, the one-seed reliability of the fine-tuned Dice
# (ICC(3,1), 90 % interval from resampling sources) and the split-half reliability of the mean over the seeds
# that ran; right, the Spearman-Brown prophecy: the reliability of a mean of k seeds from each target's one-seed
# reliability; dashed: the {glue:text}`seg_n_seeds` seed(s) this profile runs, dotted: the level
# {glue:text}`reliability_level`.

# %% [markdown]
# ## Scoring: CC-FV and the baselines
# Each source model (with its own head, in evaluation mode) runs once over the first images of the target's
# fine-tuning train subset. The pixels read are chosen from the target masks alone, so every source is scored on
# the same pixels: per image, foreground pixels split across the classes present in proportion to their size,
# and pixels drawn uniformly over the image. At those pixels CC-FV reads the outputs of several decoder blocks,
# upsampled to the output size:
#
# - **class consistency** (CC): for each class and each pair of images, a Gaussian is fitted to the class's
#   sampled features in each image and the 2-Wasserstein distance between the two is taken; CC is the mean over
#   classes of the mean over image pairs (lower = the structure looks alike across images);
# - **feature variety** (FV): the hyperspherical energy of the images' L2-normalised mean features, the mean over
#   image pairs of 1 / distance (lower = spread more evenly over the sphere);
# - the score sums −log(CC · FV) over the decoder blocks: higher = predicted to transfer better.
#
# The baselines (LogME, TransRate, GBC, LEEP) get the same pixels of the last decoder block, the features the
# segmentation head reads, with each pixel's class as its label. One call scores every (source, target):

# %%
scores = SEG.run_segmentation_scoring(cfg, out, root=data_root, device=device, progress=False)

# %% tags=["hide-input"]
status = scores.pivot_table(index="metric", columns="status", values="score", aggfunc="size", fill_value=0)
display(status.reindex([m for m in SS.SCORES if m in status.index]))
bad = scores[scores["status"].isin(["error", "nan"])]
if len(bad):
    display(booktext.table(bad[["source", "target", "metric", "status", "reason"]]
                           .drop_duplicates(["metric", "reason"])))

# %% [markdown]
# **Table 8.** Rows of `segmentation_scores.csv` per score and status: `ok` rows have a score, `unavailable`
# rows belong to sources that cannot be had here, `error` rows carry the reason (listed below the counts when
# there are any).

# %% tags=["hide-input"]
tables = score_tables(scores, SS.SCORES)
main = ["ccfv", "ccfv_unit", "logme", "transrate", "gbc", "leep"]
ncol = 3  # three panels a row keep the numbers readable at page width
fig, axes = plt.subplots(2, ncol, figsize=(3.3 * ncol, 2 * (0.42 * truth.shape[0] + 1.6)), squeeze=False)
for ax, m in zip(axes.flat, main):
    if m not in tables:
        ax.axis("off")
        continue
    w = tables[m].reindex(index=truth.index, columns=truth.columns)
    norm = (w - w.min()) / (w.max() - w.min()).replace(0, np.nan)
    sns.heatmap(norm, ax=ax, cmap="viridis", vmin=0, vmax=1, cbar=False, annot=w.to_numpy(), fmt=".3g",
                annot_kws={"fontsize": 7})
    ax.set_title(SS.LABELS[m], fontsize=9)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(labelsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Figure 4.** Scores of CC-FV (as defined, and on the unit sphere) and the four baselines per source (row) and
# target (column). The numbers are the raw scores; the colour is min-max normalised within each target column
# (brighter = ranked higher). Compare each panel with the ground truth of Figure 2.

# %% tags=["hide-input"]
parts = SS.layer_parts_table(scores, "ccfv").assign(random=lambda d: np.where(d["source"] == "random",
                                                                              "random", "pre-trained"))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, what, label in ((axes[0], "cc", "class consistency CC (2-Wasserstein, lower = better)"),
                        (axes[1], "fv", "feature variety FV (energy, lower = better)")):
    sns.stripplot(data=parts, x="layer", y=what, hue="random", ax=ax, size=4, palette=["tab:blue", "tab:red"],
                  hue_order=["pre-trained", "random"])
    ax.set_yscale("log")
    ax.set_title(label, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
fig.tight_layout()
plt.show()
ratio = (parts[parts["random"] == "pre-trained"].groupby("layer")["cc"].median()
         / parts[parts["random"] == "random"].groupby("layer")["cc"].median())
booktext.glue(cc_ratio=", ".join(f"{v:.0f}x" for v in ratio.reindex(SS.scoring_section(cfg)["layers"])))

# %% [markdown]
# **Figure 5.** The two parts of CC-FV per decoder block (deep to shallow) for every (source, target) pair; red
# points are the randomly initialised source. The median CC of the pre-trained sources is
# {glue:text}`cc_ratio` that of the random one (per block, deep to shallow): see *A confound: feature scale*
# below.

# %% [markdown]
# ## How well each score ranks the sources
# Per target, the weighted Kendall's τ and Pearson's r between each score and the fine-tuned Dice over the
# available sources (`helpers.evaluation.correlate`, as in the Correlation chapter), then the mean over
# targets. [S] reports weighted τ on 3D CT tasks of the Medical Segmentation Decathlon with its own model bank;
# the published means are set beside ours only as a reference point: **a different benchmark** (2D, other
# modalities, other sources and training budgets), so agreement is not expected.

# %% tags=["hide-input"]
results = E.correlate_many(tables, truth, exclude_self=True)
long = E.tidy(results)
# metrics x targets tables of one statistic
wt = E.wide(long, "weighted_tau").T.reindex([m for m in SS.SCORES if m in tables])
pr = E.wide(long, "pearson").T.reindex(wt.index)
published = pd.Series({"logme": 0.022, "transrate": 0.269, "leep": 0.394, "gbc": 0.411, "ccfv": 0.499})
main_rows = [m for m in ["ccfv", "ccfv_unit", "logme", "transrate", "leep", "gbc", "scale_control"] if m in wt.index]
summary = pd.DataFrame({"weighted τ (mean)": wt.mean(axis=1), "Pearson (mean)": pr.mean(axis=1),
                        "[S] weighted τ (MSD CT)": published}).reindex(main_rows)
summary.index = [SS.LABELS[m] for m in summary.index]
booktext.glue(seg_n_src=int(long["n_sources"].max()))
summary.style.format("{:.3f}", na_rep="–")

# %% [markdown]
# **Table 9.** Mean over the {glue:text}`n_seg_targets` targets of the weighted τ and Pearson's r between each
# score and the fine-tuned test Dice (at most {glue:text}`seg_n_src` sources per target), beside the means [S]
# published on five MSD CT tasks (LogME .022, TransRate .269, LEEP .394, GBC .411, CC-FV .499). Different data,
# models and budgets: the published column is context, not a target to match. The last row is a control, not a
# metric (see below).

# %% tags=["hide-input"]
show = wt.loc[main_rows].rename(index=SS.LABELS)
show.style.format("{:.3f}", na_rep="NaN").background_gradient(axis=None, cmap="RdBu", vmin=-1, vmax=1)

# %% [markdown]
# **Table 10.** Weighted τ per score (rows) and target (columns): blue = the score ranks the sources as
# fine-tuning does, red = the reverse. NaN marks a constant score column.

# %% [markdown]
# ### What the ground truth's reliability allows these correlations to say
# A score can correlate with the ground truth only as far as the ground truth agrees with itself: with
# reliability $R$ (Table 7) the correlation of even a perfect score with the mean Dice is about $\sqrt{R}$ at
# most. Over a handful of sources a correlation must also be large before it can be told apart from chance (the
# two-sided 5 % threshold of Pearson's r over $n$ sources). Per target, the table sets CC-FV's Pearson
# correlation with the mean Dice beside both.

# %% tags=["hide-input"]
ccfv_n = long[long["metric"] == "ccfv"].set_index("target")["n_sources"] if "ccfv" in set(long["metric"]) \
    else pd.Series(dtype=float)
rel_by_target = (seg_rel.iloc[:-1].set_index("target")["split_half"] if seg_rel is not None
                 else pd.Series(dtype=float))
cap_rows = []
for t in truth.columns:
    r = float(pr.loc["ccfv", t]) if "ccfv" in pr.index and t in pr.columns else float("nan")
    n = int(ccfv_n.get(t, 0))
    rel = float(rel_by_target.get(t, float("nan")))
    cap_rows.append({"target": t, "sources": n, "reliability R": rel,
                     "ceiling √R": np.sqrt(max(rel, 0.0)) if np.isfinite(rel) else float("nan"),
                     "chance |r|": REL.chance_correlation(n), "CC-FV Pearson r": r,
                     "verdict": REL.correlation_verdict(r, rel, n)})
caps = pd.DataFrame(cap_rows).set_index("target")
kinds = caps["verdict"].str.split(" ").str[0]
booktext.glue(
    seg_cap_text="; ".join(f"{t}: {v}" for t, v in caps["verdict"].items()),
    seg_n_apart=int(caps["verdict"].str.startswith("told apart").sum()),
    seg_n_caveat=int(caps["verdict"].str.startswith("carries the caveat").sum()),
    seg_n_within=int(caps["verdict"].str.startswith("within chance").sum()),
    seg_n_cap_targets=len(caps))
caps.style.format({"reliability R": "{:.2f}", "ceiling √R": "{:.2f}", "chance |r|": "{:.2f}",
                   "CC-FV Pearson r": "{:.2f}"}, na_rep="–")

# %% [markdown]
# **Table 11.** Per target: the sources CC-FV and the ground truth share, the split-half reliability $R$ of the
# mean Dice over the seeds (Table 7), the ceiling $\sqrt{R}$ it puts on any score's correlation, the |r| that
# chance reaches over that many sources (two-sided 5 %), CC-FV's Pearson correlation with the mean Dice (as in
# Table 9's mean) and what that correlation can say. A target without a reliability (too few sources, or one
# seed) is "not measured".
#
# Per target: {glue:text}`seg_cap_text`.
#
# Of the {glue:text}`seg_n_cap_targets` targets, CC-FV's correlation is told apart from chance on
# {glue:text}`seg_n_apart`, is within chance although the ground truth would allow more on
# {glue:text}`seg_n_within`, and carries the ground truth's caveat on {glue:text}`seg_n_caveat`: there the
# reliability alone keeps any score's correlation within what chance gives over these sources, so no verdict on
# CC-FV (good or bad) can be read from that target.

# %% tags=["hide-input"]
for target in truth.columns:
    fig = E.scatter_target({m: tables[m] for m in main if m in tables}, truth, target, labels=SS.LABELS,
                           ncols=3, panel=2.2, truth_label="fine-tuned test Dice")
    plt.show()

# %% [markdown]
# **Figure 6.** Score (x) against fine-tuned test Dice (y), one figure per target and one panel per score; each
# point is a source and the line a least-squares fit; the panel title gives the score and its weighted τ.

# %% tags=["hide-input"]
practical = E.practical_summary(long).reindex(main_rows)
practical.index = [SS.LABELS.get(m, m) for m in practical.index]
practical.round(3)

# %% [markdown]
# **Table 12.** What trusting each score costs: mean top-1 relative Dice (Dice of the top-scored source over the
# best one), mean / median / worst regret (Dice lost by fine-tuning the top-scored source instead of the best),
# and the expected number of targets where its first choice is the best source.

# %% [markdown]
# ## A confound: feature scale
# The 2-Wasserstein distance between two Gaussians is measured in the units of the features: multiply a
# layer's features by s and CC is multiplied by s, while the hyperspherical energy of normalised mean features
# does not move. CC-FV therefore prefers a model whose decoder features are merely *small*. The control score
# `scale_control` is minus the log of the features' root-mean-square, a score that knows nothing else; the
# variant `ccfv_unit` puts every sampled feature on the unit sphere first, so it cannot see the scale.

# %% tags=["hide-input"]
rms = np.exp(-tables["scale_control"])
display(rms.reindex(index=truth.index, columns=truth.columns).style.format("{:.3f}", na_rep=""))
rho = pd.Series({t: tables["ccfv"][t].corr(tables["scale_control"][t], method="spearman")
                 for t in truth.columns}, name="Spearman(ccfv, scale control)")
rho_unit = pd.Series({t: tables["ccfv_unit"][t].corr(tables["scale_control"][t], method="spearman")
                      for t in truth.columns}, name="Spearman(ccfv_unit, scale control)")
display(pd.concat([rho, rho_unit], axis=1).round(3).T)
top = pd.DataFrame({m: tables[m].idxmax() for m in ["ccfv", "ccfv_unit", "scale_control"]}).T
display(top.rename(index=SS.LABELS))
smallest = rms.idxmin().value_counts()
booktext.glue(smallest_source=smallest.index[0], smallest_count=int(smallest.iloc[0]),
              rho_median=float(rho.median()), rho_unit_median=float(rho_unit.median()))

# %% [markdown]
# **Table 13.** Root-mean-square of the sampled decoder features per source (row) and target (column), averaged
# over the scored blocks; then, per target, the Spearman correlation of the CC-FV scores with the scale control
# over the sources, and the source each score ranks first. The source with the smallest features is
# **{glue:text}`smallest_source`** on {glue:text}`smallest_count` of the {glue:text}`n_seg_targets` targets;
# CC-FV's scores follow the scale control with a median Spearman correlation of {glue:text}`rho_median:.2f`
# ({glue:text}`rho_unit_median:.2f` on the unit sphere). Where random initialisation also fine-tunes best, the
# confound makes CC-FV look right for the wrong reason.

# %% [markdown]
# ## Ablations and the official averaging
# [S] Table 2 removes one part of CC-FV at a time: without class consistency, without feature variety, a single
# decoder scale, and other distances between the class Gaussians (KL divergence, Bhattacharyya distance) instead
# of Wasserstein. Two more rows isolate what we changed in the official code:
#
# - **official averaging**: the official code accumulates the per-class sums of distances into a running total
#   that it also rescales at each class (`w += w / (L²/2) / K`), so with more than one foreground class the
#   classes are weighted unequally and the pair count is wrong. We take the mean over classes of the mean over
#   image pairs. With one foreground class the two differ by a constant factor and rank sources identically; only
#   ACDC (three structures) can tell them apart here;
# - **official code**: also the official combination `log(FV / CC)` on raw (unnormalised) mean features, in
#   which a *higher* energy raises the score, the opposite of what "variety" means. Our default uses the
#   energy of normalised features with the sign that rewards variety.

# %% tags=["hide-input"]
ablation = wt.loc[[m for m in SS.CCFV_VARIANTS if m in wt.index]]
abl = pd.DataFrame({"weighted τ (mean)": ablation.mean(axis=1), "Pearson (mean)": pr.reindex(ablation.index).mean(axis=1)})
abl = abl.join(ablation)
abl.index = [SS.LABELS[m] for m in abl.index]
abl.style.format("{:.3f}", na_rep="NaN")

# %% [markdown]
# **Table 14.** The CC-FV variants: mean weighted τ and Pearson over the targets, then the weighted τ per target.
# Rows: our CC-FV; the official averaging of the class distances; the official code as published; without CC;
# without FV; only the shallowest decoder block; KL and Bhattacharyya distances instead of 2-Wasserstein; every
# feature on the unit sphere.

# %% tags=["hide-input"]
same = {}
for t in truth.columns:
    a, b = tables["ccfv"][t].dropna(), tables["ccfv_official_average"][t].dropna()
    same[t] = bool((a.rank() == b.reindex(a.index).rank()).all())
classes = {t: data[t].n_classes - 1 for t in truth.columns}
pd.DataFrame({"foreground classes": classes, "same ranking as fixed averaging": same})

# %% [markdown]
# **Table 15.** Whether the official averaging ranks the sources of each target exactly as the fixed averaging
# does. With one foreground class it must (the two differ by a constant factor); with several classes it need
# not, and whether it does depends on the sources.

# %% [markdown]
# ## Summary
# - A leave-one-out bank of U-Nets (ResNet-18 encoder) on five 2D sets gives, per target, a ranking of the
#   sources by fine-tuned test Dice, the mean over {glue:text}`seg_n_seeds` fine-tuning seed(s) (Figure 2). On
#   the quick profile the gaps between sources are small and random initialisation is the best source on
#   {glue:text}`n_random` of the {glue:text}`n_seg_targets` targets: short pre-training on small sets brings
#   little.
# - That ground truth has a measured reliability (Table 7, Figure 3): one fine-tuning run
#   {glue:text}`seg_r1` over all targets, the mean of the seeds {glue:text}`seg_now`; {glue:text}`seg_needed`
#   seeds would reach {glue:text}`reliability_level`.
# - CC-FV and the four baselines of [S] score every source from one forward pass over the same sampled pixels;
#   Tables 9 and 10 say how well each ranks the sources, Table 12 what trusting it costs. Table 11 says on which
#   targets CC-FV's correlation can be told apart from chance at the ground truth's reliability
#   ({glue:text}`seg_n_apart` of {glue:text}`seg_n_cap_targets`) and on which it carries the ground truth's
#   caveat ({glue:text}`seg_n_caveat`).
# - CC-FV's class consistency is measured in the units of the features, so the score partly tracks feature
#   scale (Table 13); the unit-sphere variant removes that confound.
# - The ablations (Table 14) show which part of CC-FV carries its ranking on this benchmark; the official
#   averaging can differ from ours only on the multi-structure target (Table 15).
# - With five targets and at most six sources each, and a quick-profile training budget, these correlations are
#   illustrative: a single swapped pair moves a weighted τ a lot.
#
# ## What's next
# The `paper` profile runs the same bank at 128 px with every image and longer training, for a GPU, where the
# pre-trained sources have something to transfer. The `helpers.metrics.ccfv` functions score any user's
# segmentation model: sample pixels from the target masks, gather decoder features there, and call
# `ccfv_parts` per layer and `ccfv` across layers (see the README).

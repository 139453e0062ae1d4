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
# # Hidden representations: what fine-tuning changes
#
# ## Overview
# [R] {cite}`juodelyte2023revisiting` looks inside networks before and after fine-tuning on medical images: how
# similar is a fine-tuned network to the network it started from, stage by stage, how similar are two networks
# fine-tuned from different sources, and does the similarity say anything about how much pre-training helped?
# Its measure is the mean canonical correlation (CCA) between the activations of two networks at the stem and
# after each residual stage of a ResNet-50; its sources are ImageNet, RadImageNet and random initialisation.
#
# This chapter first rebuilds [R]'s figures from its published result tables, then runs the same analyses as a
# resumable stage on MedMNIST with this project's own sources, adds what [R] leaves out (the floor and a
# permutation null for every cell, the number of points per cell, CKA beside CCA, the correct
# independent-errors baseline, the weight change), and says where the two agree.
#
# 1. Reproduction of [R] from its tables: CCA per stage, prediction similarity, similarity against gain
# 2. Our runs: the recipe, fine-tuning and weight change, the cells, similarity per stage with floor and null,
#    similarity across networks, prediction similarity, similarity against gain
# 3. What our runs agree or disagree with
#
# ## Prerequisites
# | Concept | Importance | Notes |
# | --- | --- | --- |
# | [Pretraining chapter](02_pretraining) | Necessary | the sources `results/<profile>/sources/*.safetensors` |
# | CCA, CKA | Helpful | `helpers.similarity`; PROTOCOL.md section 8 |
# | ResNet stages | Helpful | stem ReLU (`conv1` in [R]'s tables) and `layer1`..`layer4` (`block1`..`block4`) |
#
# - **Time to run**: about 3–4 minutes on the quick profile (2-core CPU), most of it fine-tuning.

# %% tags=["parameters", "hide-input"]
profile = "quick"   # profile name (profiles/<name>.yml) or path to a profile file
data_root = None    # None: $DATA_ROOT, else data/
device = None       # None: the profile's device (auto: cuda when present)
n_boot = 2000       # bootstrap replicates for the correlation intervals

# %% [markdown]
# ## Imports

# %% tags=["hide-input"]
# %matplotlib inline
import os

# Passive OpenMP waiting: on a CPU shared with other work, spinning threads slow training several-fold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from helpers import booktext
from helpers import reference_r as RR
from helpers import representations as RP
from helpers import viz
from helpers.data import MD5MismatchWarning, load_medmnist
from helpers.paths import results_root
from helpers.profiles import load_profile, resolve_device
from helpers.transforms import AffineAugmentConfig
from helpers.stages import representations as RS
from helpers.viz import augmentation_grid

# %% tags=["hide-input"]
cfg = load_profile(profile)
settings = RP.representations_settings(cfg)
device = device or resolve_device(cfg)
out = results_root(cfg["name"])
print(f"profile {cfg['name']!r}: {settings['architecture']}, targets {settings['targets']}, sources "
      f"{settings['sources']} + random init, folds {settings['folds']} of {settings['n_folds']}, device {device}")

# %% [markdown]
# ## Reproduction of [R]
# [R]'s repository publishes its result tables (the numbers of its first arXiv version; see
# `data/reference/juodelyte2023/README.md`). `helpers.reference_r` reads them into tidy tables; nothing here is
# recomputed from images.
#
# ### CCA per stage
# [R] samples about 10 000 spatial positions of target images and 64 random channels per stage, computes
# google/svcca's CCA {cite}`raghu2017svcca` between the two networks' activations and reports the mean of all
# canonical correlations, averaged over 5 draws, per fold. Its summary calls this "SVCCA", but there is no SVD
# step (PROTOCOL.md section 8).

# %% tags=["hide-input"]
r_cca = RR.load_cca()
r_summary = RR.cca_summary(r_cca)
fig = viz.plot_reference_cca(r_summary)
plt.show()

# %% [markdown]
# **Figure 1.** [R]'s CCA per stage and target, from its published tables: mean over the 5 folds (line) and ± 1 SD
# over folds (band). `-FT`: fine-tuned on the panel's target (no freeze); `random`: an untrained network; the
# dashed line (two untrained networks) is the floor.

# %% tags=["hide-input"]
r_kind = r_cca.groupby(["pair_kind", "stage"], observed=True)["cca"].mean().unstack()
display(r_kind.round(3))
floor_r = r_kind.loc["untrained_vs_untrained"]
pf_r = r_kind.loc["pretrained_vs_finetuned"]
deep = [c for c in r_kind.columns if c != "conv1"]
booktext.glue(r_floor_min=floor_r[deep].min(), r_floor_max=floor_r[deep].max(), r_floor_conv1=floor_r["conv1"],
              r_pf_conv1=pf_r["conv1"], r_pf_block4=pf_r["block4"],
              r_pf_below=", below the floor there" if pf_r["block4"] < floor_r["block4"] else "",
              r_across_block4=r_kind.loc["finetuned_across_sources", "block4"],
              r_freeze_block4=r_kind.loc["freeze_vs_no_freeze", "block4"])

# %% [markdown]
# **Table 1.** [R]'s CCA per kind of pair and stage, mean over its 7 targets, the pairs of each kind and 5 folds.
# The floor (two untrained networks) is {glue:text}`r_floor_min:.2f`–{glue:text}`r_floor_max:.2f` beyond conv1 and
# {glue:text}`r_floor_conv1:.2f` at conv1. A network and its fine-tuned self go from {glue:text}`r_pf_conv1:.2f` at
# conv1 to {glue:text}`r_pf_block4:.2f` at block4{glue:text}`r_pf_below`; two networks fine-tuned from ImageNet and
# RadImageNet are at {glue:text}`r_across_block4:.2f` at block4, and the same source fine-tuned with and without
# the freeze step at {glue:text}`r_freeze_block4:.2f`.

# %% [markdown]
# ### Prediction similarity
# For the ImageNet-fine-tuned and RadImageNet-fine-tuned networks of a target and fold, [R] counts the test
# images on which both are right or both are wrong, and compares with an "independent predictions" baseline.
# The code computes that baseline as `acc_A² + (1 - acc_A)²`, the ImageNet network's accuracy used twice (a
# defect); the correct one is `acc_A acc_B + (1 - acc_A)(1 - acc_B)`. The tables do not hold B's accuracy, but
# the observed agreement bounds it, so `helpers.reference_r` gives the range of the correct baseline and of
# Cohen's kappa of error consistency {cite}`geirhos2020beyond` that the tables allow.

# %% tags=["hide-input"]
r_pred = RR.load_prediction_similarity()
fig = viz.plot_reference_predictions(r_pred)
plt.show()

# %% [markdown]
# **Figure 2.** [R]'s prediction similarity per target, mean over 5 folds: the observed agreement (bar), [R]'s
# baseline as coded (×) and the range of the correct independent-errors baseline compatible with the tables
# (black line).

# %% tags=["hide-input"]
cols = ["observed", "r_baseline", "correct_baseline_low", "correct_baseline_high", "kappa_r_baseline",
        "kappa_low", "kappa_high"]
r_pred_table = r_pred.groupby(["freeze", "target"])[cols].mean()
display(r_pred_table.round(3))
above_r = (r_pred.observed > r_pred.r_baseline).mean()
above_all = (r_pred.observed > r_pred.correct_baseline_high).mean()
feasible = r_pred.r_baseline_feasible.mean()
booktext.glue(r_pred_cells=len(r_pred), r_above_baseline=above_r, r_above_all=above_all, r_feasible=feasible)

# %% [markdown]
# **Table 2.** Per freeze variant and target, means over folds: observed agreement, [R]'s baseline, the bounds of
# the correct baseline and the kappas. Of the {glue:text}`r_pred_cells` (target, variant, fold) cells, the observed
# agreement is above [R]'s baseline in {glue:text}`r_above_baseline:.0%` and above every value of the correct
# baseline that the tables allow in {glue:text}`r_above_all:.0%`; equal accuracies (where [R]'s formula is the
# correct one) are compatible with the observed agreement in {glue:text}`r_feasible:.0%`.

# %% [markdown]
# ### Similarity against gain
# [R] plots, per stage, the CCA between a pre-trained network and its fine-tuned self against the relative AUC
# gain over random initialisation on the same target and fold, `(AUC_FT - AUC_random) / AUC_random`, 7 targets ×
# 5 folds per source.

# %% tags=["hide-input"]
r_svg = RR.similarity_vs_gain()
fig = viz.plot_gain_scatter(r_svg, x="cca", hue="source", panel="stage", xlabel="CCA(pre-trained, fine-tuned)")
plt.show()

# %% [markdown]
# **Figure 3.** [R]'s CCA between each pre-trained network and its fine-tuned self (x) against the relative AUC gain
# over random initialisation (y), one point per target and fold, one panel per stage; the line is the
# least-squares fit over both sources, r its Pearson correlation.

# %% tags=["hide-input"]
corr_points = RR.gain_correlation(r_svg, n_boot=n_boot, resample="points")
corr_targets = RR.gain_correlation(r_svg, n_boot=n_boot, resample="targets")
corr = corr_points[["source", "stage", "n", "r", "ci_low", "ci_high", "p_value"]].merge(
    corr_targets[["source", "stage", "ci_low", "ci_high"]], on=["source", "stage"], suffixes=("", "_by_target"))
display(booktext.table(corr))
strong = corr[(corr.ci_high < 0) | (corr.ci_low > 0)]
strong_t = corr[(corr.ci_high_by_target < 0) | (corr.ci_low_by_target > 0)]
booktext.glue(n_boot=n_boot, r_n_strong=len(strong), r_n_corr=len(corr), r_n_strong_targets=len(strong_t),
              r_strong_list=(f" ({', '.join(f'{s} {g}' for s, g in zip(strong.source, strong.stage))})"
                             if len(strong) else ""))

# %% [markdown]
# **Table 3.** Pearson's r of CCA and relative gain per source and stage, with 95 % bootstrap intervals
# ({glue:text}`n_boot` replicates) resampling the 35 (target, fold) points as independent (`ci_low`, `ci_high`,
# what [R]'s regression plot assumes) and resampling whole targets (`_by_target`; folds of one target share its
# data). {glue:text}`r_n_strong` of {glue:text}`r_n_corr` intervals exclude 0 when points are
# resampled{glue:text}`r_strong_list`, {glue:text}`r_n_strong_targets` when targets are.

# %% [markdown]
# ## Our runs
# ### The recipe
# [R]'s recipe (PROTOCOL.md section 8) as the profile's `representations` section runs it: a Dropout(0.5) +
# Linear head, Adam without a schedule, early stopping on the validation loss with the best-val-loss weights
# kept; the freeze variant first trains the head alone (backbone frozen, Adam 1e-3, early stopping on validation
# accuracy) and then everything. Folds are 5 stratified folds over all images of the flag (train, val and test
# pooled): the held-out fifth is the test set, a stratified fifth of the rest the validation set.

# %% tags=["hide-input"]
r_size = {t: RR.INPUT_SIZE.get(t) for t in settings["targets"]}
size_dev = [t for t, v in r_size.items() if v != settings["image_size"]]
caps = [settings[f"max_{s}_images"] for s in ("train", "val", "test")]
recipe = pd.DataFrame([
    {"": "architecture", "this profile": settings["architecture"], "[R]": "resnet50",
     "deviation": "yes" if settings["architecture"] != "resnet50" else ""},
    {"": "sources", "this profile": ", ".join(settings["sources"]) + ", random init",
     "[R]": "ImageNet, RadImageNet, random init", "deviation": ""},
    {"": "freeze variant for", "this profile": ", ".join(settings["freeze_sources"]) or "none",
     "[R]": "ImageNet, RadImageNet", "deviation": ""},
    {"": "input size", "this profile": f"{settings['image_size']} px (from {settings['file_size']} px files)",
     "[R]": ", ".join(f"{v} px ({t})" if v else f"unknown ({t})" for t, v in r_size.items()),
     "deviation": ("yes: " + ", ".join(size_dev)) if size_dev else ""},
    {"": "Adam lr / batch / max epochs / patience",
     "this profile": "{lr:g} / {batch_size} / {epochs} / {patience}".format(**settings["finetune"]),
     "[R]": "1e-05 / 128 / 200 / 3 (v1), 30 (later)",
     "deviation": "yes" if settings["finetune"]["lr"] != 1e-5 or settings["finetune"]["batch_size"] != 128
     or settings["finetune"]["epochs"] != 200 else ""},
    {"": "folds run", "this profile": f"{len(settings['folds'])} of {settings['n_folds']}", "[R]": "5 of 5",
     "deviation": "yes" if len(settings["folds"]) != 5 else ""},
    {"": "images per fold (train / val / test)",
     "this profile": "64 / 16 / 20 % of the flag's images (validation carved from the training part)"
     + ("; at most " + " / ".join(str(c or "all") for c in caps) + " images" if any(caps) else ""),
     "[R]": f"{RR.TRAIN_SHARE:.0%} for training, {1 - RR.TRAIN_SHARE:.0%} held out (its split files)",
     "deviation": "yes"},
    {"": "CCA points / channels / repeats",
     "this profile": "{points} / {channels} / {repeats}".format(**settings["similarity"]), "[R]": "10000 / 64 / 5",
     "deviation": "" if (settings["similarity"]["points"], settings["similarity"]["channels"],
                         settings["similarity"]["repeats"]) == (10000, 64, 5) else "yes"},
]).set_index("")
display(recipe)
booktext.glue(lr_note=("The learning rate is higher than [R]'s 1e-5 so that the few dozen optimizer steps a CPU "
                       "allows move the weights measurably (the steps and the weight change are reported below). "
                       if settings["finetune"]["lr"] > 1e-5 else ""),
              file_size=settings["file_size"], image_size=settings["image_size"])

# %% [markdown]
# **Table 4.** This profile's recipe beside [R]'s; `deviation` marks every setting that differs from [R]'s code.
# {glue:text}`lr_note`BreastMNIST and PneumoniaMNIST come from the same images as [R]'s Breast (BUSI) and Chest
# (pediatric pneumonia X-rays), with the same label definitions (malignant vs normal + benign; normal vs
# pneumonia), but at {glue:text}`file_size` px, upsampled here to {glue:text}`image_size` px, and without patient
# ids: [R] grouped its Chest folds by patient, these folds are stratified by class only, so one patient's images
# can be in the training and the test fold.

# %% tags=["hide-input"]
aug = AffineAugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings["augment"].items()})
with warnings.catch_warnings():
    warnings.simplefilter("ignore", MD5MismatchWarning)  # the Data chapter reports the files' checksums
    first_data = load_medmnist(settings["targets"][0], size=settings["file_size"], root=data_root)
fig = augmentation_grid(first_data, settings["image_size"], n_images=3, n_views=6, augment=aug,
                        title=f"{settings['targets'][0]}: [R]'s augmentation at {settings['image_size']} px")
plt.show()
booktext.glue(aug_degrees=float(aug.degrees), aug_shift=float(aug.translate[0]), aug_zoom_low=float(aug.scale[0]),
              aug_zoom_high=float(aug.scale[1]), aug_shear=float(aug.shear), aug_flip=float(aug.flip_p),
              aug_no_flip=", ".join(settings["no_flip"]))

# %% [markdown]
# **Figure 4.** [R]'s training augmentation as this project runs it on the device (`AffineAugmentConfig`):
# rotation ± {glue:text}`aug_degrees:g`°, shifts ± {glue:text}`aug_shift:.0%`, zoom
# {glue:text}`aug_zoom_low:g`–{glue:text}`aug_zoom_high:g` per axis, shear ± {glue:text}`aug_shear:g`°, edge
# pixels repeated outside the image, horizontal flip with probability {glue:text}`aug_flip:g` (none for
# {glue:text}`aug_no_flip`). First column: the evaluation view.

# %% [markdown]
# ### Fine-tuning runs
# Each (source, target, fold, variant) is one resumable unit that writes its best checkpoint (safetensors) and
# its test-set probabilities; activations and analyses are units of their own (`helpers.representations`).

# %%
start = time.perf_counter()
tables = RS.run_representations(cfg, out, root=data_root, device=device, progress=False, require_sources=True)
stage_seconds = time.perf_counter() - start
runs, weights, sim = tables["runs"], tables["weights"], tables["similarity"]
cols = ["target", "source", "variant", "n_train", "n_val", "n_test", "epochs_head", "steps_head", "epochs", "steps",
        "best_epoch", "val_loss", "val_auc", "test_auc", "test_acc", "relative_gain", "train_seconds"]
display(booktext.table(runs[[c for c in cols if c in runs]]))
if not tables["unavailable"].empty:
    display(tables["unavailable"])

# %% tags=["hide-input"]
booktext.glue(n_runs=len(runs), stage_seconds=stage_seconds,
              steps=(f"{runs.steps.min():.0f}" if runs.steps.min() == runs.steps.max() else
                     f"{runs.steps.min():.0f}–{runs.steps.max():.0f}"),
              runs_csv=f"results/{cfg['name']}/representations_runs.csv",
              similarity_csv=f"results/{cfg['name']}/representations_similarity.csv")

# %% [markdown]
# **Table 5.** One row per fine-tuning run ({glue:text}`n_runs` runs; the stage took
# {glue:text}`stage_seconds:.0f` s in this execution, less when its units were already stored): images per split,
# epochs and optimizer steps of the head phase (freeze variant) and of the whole-network phase, the epoch whose
# weights were kept, validation and test metrics, and the relative test-AUC gain over random initialisation on the
# same fold. The whole-network phase took {glue:text}`steps` optimizer steps. Written to {glue:text}`runs_csv`.

# %% tags=["hide-input"]
fig = viz.plot_weight_change(weights)
plt.show()
wpiv = weights[weights.stage.isin(["conv1", "layer1", "layer2", "layer3", "layer4"])].pivot_table(
    index=["target", "source", "variant"], columns="stage", values="relative_change")
display(wpiv.round(3))
booktext.glue(w_min=wpiv.min().min(), w_max=wpiv.max().max(), w_median=np.nanmedian(wpiv.to_numpy()),
              w_cosine=weights[weights.stage != "fc"].cosine.min())

# %% [markdown]
# **Figure 5 and Table 6.** Relative change of the convolution weights per stage between the start of fine-tuning
# and the kept weights, `|W_ft - W_0| / |W_0|` (this project's extension: [R] has no weight-space measure).
# Fine-tuning moved the weights by {glue:text}`w_min:.1%` to {glue:text}`w_max:.1%` of their norm (median
# {glue:text}`w_median:.1%`); the cosine between old and new weights is at least {glue:text}`w_cosine:.3f`.

# %% [markdown]
# ### The cells: points and channels
# Every similarity value is computed on a cell of n points (spatial positions of sampled images) and d channels.
# CCA is invariant to any invertible linear map, so with few points it finds correlations in noise: for
# independent data its mean canonical correlation is of order √(d/n). Cells with n < 10 d are flagged. Linear CKA
# {cite}`kornblith2019similarity` is invariant only to orthogonal maps and isotropic scaling; its biased form is
# inflated at small n, its debiased form is not.

# %% tags=["hide-input"]
acts = tables["activations"]
cells = acts.groupby(["target", "layer"], sort=False)[["height", "width", "layer_channels", "n_stimuli", "n_images",
                                                       "n_points", "n_channels", "few_points"]].first()
display(cells)
booktext.glue(n_few_points=int(acts.few_points.sum()), n_cells=len(acts))

# %% [markdown]
# **Table 7.** Per target and layer: the layer's map size and channels, the stimulus images (the fold's held-out
# images), the images sampled (round(points / (h w)), [R]'s rule), the points n and channels d of each cell.
# {glue:text}`n_few_points` of {glue:text}`n_cells` cells have n < 10 d.

# %% tags=["hide-input"]
first = (settings["targets"][0], settings["folds"][0])
plan = RS.representations_configs(cfg, out, data_root)
xa = RS.load_activations(out, plan, *first, "untrained (seed %d)" % settings["untrained_seeds"][0])
xb = RS.load_activations(out, plan, *first, "untrained (seed %d)" % settings["untrained_seeds"][1])
deep_layer = settings["similarity"]["layers"][-1]
a, b = xa[(deep_layer, 0)], xb[(deep_layer, 0)]
cell = acts[(acts.target == first[0]) & (acts.layer == deep_layer)].iloc[0]
hw = int(cell.height * cell.width)
sizes = [n for n in (80, 96, 128, 192, 320, 640, len(a)) if max(a.shape[1], 2 * hw) <= n <= len(a)]
curve = RP.similarity_vs_points(a, b, sizes, points_per_image=hw)
curve_pos = RP.similarity_vs_points(a, b, sizes, points_per_image=hw, null="positions")
fig, axes = plt.subplots(1, 3, figsize=(10, 2.8), sharey=True)
for ax, (m, g) in zip(axes, curve.groupby("measure", sort=False)):
    gp = curve_pos[curve_pos.measure == m]
    ax.plot(g.n, g.value, "o-", label="two untrained networks")
    ax.plot(g.n, g.null_value, "s--", color="grey", label="images deranged (null)")
    ax.plot(gp.n, gp.null_value, "x:", color="tab:olive", label="positions shuffled (earlier null)")
    ax.axvline(10 * a.shape[1], color="tab:red", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_title(m.replace("_", " "), fontsize=9)
    ax.set_xlabel("points n")
axes[0].set_ylabel("similarity")
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.show()


def null_at(measure):
    """The null of a measure at the smallest n, and its largest absolute value from the second size on."""
    g = curve[curve.measure == measure].sort_values("n")
    return g.null_value.iloc[0], g.n.iloc[0], g.null_value.iloc[1:].abs().max(), g.n.iloc[min(1, len(g) - 1)]


def near_zero(v):
    return abs(v) < 0.05


cca0, n0, _, _ = null_at("cca")
bk0, _, bk_rest, n1 = null_at("linear_cka")
dk0, _, dk_rest, _ = null_at("linear_cka_debiased")
booktext.glue(
    deep_layer=deep_layer, deep_channels=int(a.shape[1]), deep_positions=hw, first_target=first[0],
    first_fold=first[1], null_n0=int(n0), null_n1=int(n1), null_cca0=f"{cca0:.2f}", null_bk0=f"{bk0:.3f}",
    null_bk_rest=f"{bk_rest:.3f}", null_dk0=f"{dk0:.3f}", null_dk_rest=f"{dk_rest:.3f}",
    null_bk_note=(", near 0 throughout" if near_zero(bk0) and near_zero(bk_rest) else
                  ", near 0 only with more points" if near_zero(bk_rest) else ", not near 0"),
    null_dk_note=" (near 0)" if near_zero(dk0) and near_zero(dk_rest) else "",
    pos_cca0=f"{curve_pos[(curve_pos.measure == 'cca')].null_value.iloc[0]:.2f}",
    pos_bk0=f"{curve_pos[(curve_pos.measure == 'linear_cka')].null_value.iloc[0]:.3f}",
    pos_side=("below" if curve_pos.groupby("measure").null_value.mean().mean()
              < curve.groupby("measure").null_value.mean().mean() else "above"))

# %% [markdown]
# **Figure 6.** How the measures depend on n, at {glue:text}`deep_layer` ({glue:text}`deep_channels` channels,
# {glue:text}`deep_positions` positions per image) of the two untrained networks on {glue:text}`first_target`: the
# first n points of the cell taken as whole images (line), and the same images with one network's images deranged,
# every position kept (dashed: the permutation null, what two networks give on different images of this target).
# The dotted line is n = 10 d. At n = {glue:text}`null_n0`, CCA's null is {glue:text}`null_cca0`; the biased CKA's
# null is {glue:text}`null_bk0` at n = {glue:text}`null_n0` and at most {glue:text}`null_bk_rest` in absolute value
# from n = {glue:text}`null_n1` on{glue:text}`null_bk_note`; the debiased CKA's null is {glue:text}`null_dk0` at
# n = {glue:text}`null_n0` and at most {glue:text}`null_dk_rest` from n = {glue:text}`null_n1`
# on{glue:text}`null_dk_note`. Dotted: the earlier null, which shuffles single positions and so also breaks the
# pairing of positions; at n = {glue:text}`null_n0` it gives CCA {glue:text}`pos_cca0` and biased CKA
# {glue:text}`pos_bk0`, {glue:text}`pos_side` the image null on average: what different images give is not what
# shuffled points give.

# %% [markdown]
# ### Similarity per stage, floor and permutation null
# The networks of a target and fold: two untrained networks (two seeds), each source's pre-trained network, and
# every fine-tuned one (random initialisation included). Kinds of pairs follow [R]'s names, and the figures show
# the pairs of [R]'s form. This project adds `untrained vs finetuned` (random initialisation against itself after
# fine-tuning) and a BatchNorm control: each source's pre-trained network with its BatchNorm running statistics
# re-estimated on the fold's training images (`target BN`, no weight changed), compared with the pre-trained
# network and with its fine-tuned networks. A network is always run in evaluation mode, so a pre-trained network
# normalises target images with its source's statistics while the fine-tuned one uses statistics of the target;
# the control says how much of a similarity drop is that alone.

# %% tags=["hide-input"]
extra = ["untrained_vs_finetuned", "recalibrated_vs_finetuned", "pretrained_vs_recalibrated"]
shown = sim[sim.in_r | sim.kind.isin(extra)]
null_by_layer = sim.groupby(["measure", "layer"])["null_value"].mean()


def null_sentence(measure):
    """The range of a measure's null over the stages, computed from the cells (NaN stages left out)."""
    v = null_by_layer.loc[measure].dropna()
    if v.empty:
        return "No stage has a null here (every cell holds one image)."
    return (f"Its null ranges from {v.min():.2f} ({v.idxmin()}) to {v.max():.2f} ({v.idxmax()}) over the stages"
            + (f", that of {'linear CKA' if measure == 'cca' else 'CCA'} from "
               f"{null_by_layer.loc[other].min():.2f} to {null_by_layer.loc[other].max():.2f}."
               if (other := 'linear_cka' if measure == 'cca' else 'cca') in null_by_layer.index.get_level_values(0)
               and null_by_layer.loc[other].notna().any() else "."))
fig = viz.plot_similarity_by_stage(shown, "cca")
plt.show()
booktext.glue(null_sentence_cca=null_sentence("cca"), null_sentence_cka=null_sentence("linear_cka"))

# %% [markdown]
# **Figure 7.** Our CCA per stage, one panel per target (stages named as in [R]'s tables): mean over the pairs of
# each kind, the repeats and folds (line) with ± 1 SD (band), and the permutation null of every cell (pink, mean ± 2
# SD: the same cells with one network's images deranged, positions kept; a stage whose cells hold one image has no
# null). {glue:text}`null_sentence_cca`

# %% tags=["hide-input"]
fig = viz.plot_similarity_by_stage(shown, "linear_cka")
plt.show()

# %% [markdown]
# **Figure 8.** The same for linear CKA (Kornblith et al.), which is invariant only to orthogonal maps and isotropic
# scaling. {glue:text}`null_sentence_cka`

# %% tags=["hide-input"]
summ = RP.summarize_similarity(shown, by=("kind", "layer", "measure"))
table8 = summ.pivot_table(index=["measure", "kind"], columns="layer", values="mean")[
    [l for l in settings["similarity"]["layers"]]]
display(table8.round(3))
nulls = sim.groupby(["measure", "layer"])["null_value"].agg(["mean", "std"]).unstack("layer")
display(nulls.round(3))

# %% [markdown]
# **Table 8.** Top: mean similarity per measure, kind of pair and layer over both targets (the pairs of [R]'s form,
# untrained vs fine-tuned random initialisation and the BatchNorm control). Bottom: mean and SD of the permutation
# null per measure and layer over all cells. Written to {glue:text}`similarity_csv` (one row per pair, layer,
# repeat and measure).

# %% [markdown]
# ### Similarity across networks

# %% tags=["hide-input"]
fig = viz.plot_similarity_heatmaps(sim, *first, "cca")
plt.show()

# %% [markdown]
# **Figure 9.** CCA between every pair of networks on {glue:text}`first_target` (fold {glue:text}`first_fold`), one
# panel per stage, mean over repeats. Rows and columns: the untrained networks, the pre-trained sources (and their
# BatchNorm control, compared with its own source's networks only: blank cells) and the fine-tuned networks.

# %% tags=["hide-input"]
fig = viz.plot_similarity_heatmaps(sim, *first, "linear_cka")
plt.show()

# %% [markdown]
# **Figure 10.** Linear CKA between every pair of networks on {glue:text}`first_target` (fold
# {glue:text}`first_fold`), one panel per stage, mean over repeats. Rows and columns: the untrained networks, the
# pre-trained sources (and their BatchNorm control, compared with its own source's networks only: blank cells) and
# the fine-tuned networks.

# %% [markdown]
# ### Prediction similarity

# %% tags=["hide-input"]
pred = tables["predictions"]
fig = viz.plot_prediction_bars(pred)
plt.show()
display(booktext.table(pred[["target", "fold", "network_a", "network_b", "n", "accuracy_a", "accuracy_b",
                              "error_agreement", "independent_baseline", "r_baseline_as_coded", "kappa"]]))
booktext.glue(kappa_min=f"{pred.kappa.min():.2f}", kappa_max=f"{pred.kappa.max():.2f}",
              kappa_note="" if pred.kappa.min() > 0 else " for most pairs")

# %% [markdown]
# **Figure 11 and Table 9.** Error agreement of every pair of fine-tuned networks of one variant on the test fold
# (bar), the agreement two networks with these accuracies would reach with independent errors (o:
# `acc_A acc_B + (1 - acc_A)(1 - acc_B)`), [R]'s as-coded baseline (×, model A's accuracy used twice: a defect,
# shown for comparison) and Cohen's kappa of error consistency. Kappa ranges from {glue:text}`kappa_min` to
# {glue:text}`kappa_max`: the networks share more errors than independent ones would{glue:text}`kappa_note`.

# %% [markdown]
# ### Similarity against gain

# %% tags=["hide-input"]
gain = tables["gain"]
g_cca = gain[(gain.measure == "cca") & (gain.source != "random")]
fig = viz.plot_gain_scatter(g_cca.assign(network=[f"{s} ({v})" for s, v in zip(g_cca.source, g_cca.variant)]),
                           x="similarity", hue="network", panel="stage", xlabel="CCA(pre-trained, fine-tuned)")
plt.show()
fig = viz.plot_gain_scatter(gain[(gain.measure == "cca")].dropna(subset=["relative_change"]).assign(
    network=lambda d: [f"{s} ({v})" for s, v in zip(d.source, d.variant)]),
    x="relative_change", hue="network", panel="stage", xlabel="relative weight change")
plt.show()
n_points = g_cca.groupby("stage").size().max()
booktext.glue(n_points=int(n_points))

# %% [markdown]
# **Figures 12 and 13.** Top: CCA between each pre-trained source and its fine-tuned self against the relative AUC
# gain over random initialisation on the same fold, one panel per stage (as Figure 3). Bottom: the weight change of
# the same stage against the same gain (random initialisation included, whose gain is 0 by definition). With
# {glue:text}`n_points` points per panel the correlations are illustrative only.

# %% [markdown]
# ## What our runs agree or disagree with

# %% tags=["hide-input"]
ours = summ[summ.measure == "cca"].pivot_table(index="kind", columns="layer", values="mean")
layers = settings["similarity"]["layers"]
first_l, last_l, deep_l = layers[0], layers[-1], layers[1:]
name_r = dict(zip(layers, RR.STAGES)) if len(layers) == len(RR.STAGES) else {l: l for l in layers}
pf, fl = ours.loc["pretrained_vs_finetuned"], ours.loc["untrained_vs_untrained"]
uu = sim[(sim.measure == "cca") & (sim.kind == "untrained_vs_untrained")]
uu_null = uu.groupby("layer")["null_value"].agg(["mean", "std"]).reindex(layers)
has_null = [l for l in layers if np.isfinite(uu_null.at[l, "mean"])]
above = [l for l in has_null if fl[l] > uu_null.at[l, "mean"] + 2 * uu_null.at[l, "std"]]
within = [l for l in has_null if l not in above]
no_null = [l for l in layers if l not in has_null]
floor_sentence = (
    "Against the null of the same pairs (their images deranged, positions kept: what two untrained networks give "
    "on different images of the target), the floor is above the null by more than 2 SD at "
    + (", ".join(f"{name_r[l]} ({fl[l]:.2f} against {uu_null.at[l, 'mean']:.2f})" for l in above) or "no stage")
    + (", within it at " + ", ".join(f"{name_r[l]} ({fl[l]:.2f} against {uu_null.at[l, 'mean']:.2f})"
                                     for l in within) if within else "")
    + (f" ({', '.join(name_r[l] for l in no_null)}: one image per cell, no null)" if no_null else "")
    + ". " + ("Part of the floor is therefore what two networks give on any images of this target, and only the "
              "excess over the null is similarity specific to the image shown."
              if above and (uu_null.loc[above, "mean"] > 0.1).any() else
              "The floor there is similarity specific to the images shown." if above else
              "The floor here is no more than what two networks give on different images of this target."))
below_r = [c for c in deep if pf_r[c] < floor_r[c]]
below_o = [name_r[l] for l in deep_l if pf[l] < fl[l]]
r_kinds = [k for k in RR.PAIR_KINDS if k in ours.index]
top_o = {ours.loc[r_kinds, l].idxmax() for l in layers}
top_r = {r_kind[c].idxmax() for c in r_kind.columns}
booktext.glue(
    pf_first=pf[first_l], pf_last=pf[last_l], last_layer=last_l,
    depth_direction=("the same direction" if (pf[first_l] > pf[last_l]) == (pf_r["conv1"] > pf_r["block4"])
                     else "the opposite direction"),
    floor_min=fl[deep_l].min(), floor_max=fl[deep_l].max(), floor_sentence=floor_sentence,
    r_below_floor=", ".join(below_r) or "no stage", below_floor=", ".join(below_o) or "no stage",
    below_note=(". In both, at the deepest stage a fine-tuned network is no more CCA-similar to the network it "
                "started from than two unrelated untrained networks are to each other" if "block4" in below_r
                and below_o and below_o[-1] == name_r[last_l] else ""))
bn_line = "The BatchNorm control was not run on this profile."
bn_summary = "The BatchNorm control was not run on this profile."
if "recalibrated_vs_finetuned" in ours.index:
    rc = ours.loc["recalibrated_vs_finetuned"]
    l1 = layers[1] if len(layers) > 1 else first_l
    # the share of the fine-tuning drop (1 - CCA(pre-trained, fine-tuned)) that re-estimating the statistics
    # alone recovers, in the early stages
    share = {l: (rc[l] - pf[l]) / (1 - pf[l]) for l in (first_l, l1) if pf[l] < 1}
    bn_summary = (
        f"The BatchNorm control: re-estimating a pre-trained network's BatchNorm statistics on the target, with "
        f"no weight changed, recovers {', '.join(f'{v:.0%} at {k}' for k, v in share.items())} of the drop in CCA "
        f"between it and its fine-tuned self (CCA {', '.join(f'{pf[k]:.2f} → {rc[k]:.2f} at {k}' for k in share)}). "
        + ("The statistics account for little of the change here (less than 0.1 of CCA at the stem)."
           if rc[first_l] - pf[first_l] <= 0.1 else
           "The statistics account for at least half of what CCA registers as change at "
           + " and ".join(k for k, v in share.items() if v >= 0.5)
           + (", less than half at " + " and ".join(k for k, v in share.items() if v < 0.5)
              if any(v < 0.5 for v in share.values()) else "") + "."
           if any(v >= 0.5 for v in share.values()) else
           "The statistics account for part of what CCA registers as change, less than half of it."))
    bn_line = (
        f"With the pre-trained network's BatchNorm statistics re-estimated "
        f"on the target's training images and no weight changed, its CCA to its fine-tuned self is {rc[first_l]:.2f} "
        f"at the stem (instead of {pf[first_l]:.2f}) and {rc[l1]:.2f} at {l1} (instead of {pf[l1]:.2f}), "
        f"{rc[last_l]:.2f} at {last_l} (instead of {pf[last_l]:.2f}). "
        + ("Much of what CCA registers as change in the early stages is the normalisation statistics, not the "
           "weights (which moved by a few per cent, Table 6). [R] compared its pre-trained networks with their "
           "source statistics too, so its early-stage values may include the same effect; its tables cannot say."
           if rc[first_l] - pf[first_l] > 0.1 else
           "The statistics account for little of the change here."))
freeze_line = "The freeze variant was not run on this profile."
if "freeze_vs_no_freeze" in ours.index:
    freeze_line = (
        f"[R]: {r_kind.loc['freeze_vs_no_freeze', 'conv1']:.2f} at conv1, "
        f"{r_kind.loc['freeze_vs_no_freeze', 'block4']:.2f} at block4; ours "
        f"{ours.loc['freeze_vs_no_freeze', first_l]:.2f} and {ours.loc['freeze_vs_no_freeze', last_l]:.2f}. "
        + ("In both, the two variants of one source are the most similar kind of pair at every stage."
           if top_o == top_r == {"freeze_vs_no_freeze"} else
           f"The most similar kind of pair per stage is {', '.join(sorted(top_r))} in [R] and "
           f"{', '.join(sorted(top_o))} in ours."))
pred_ft = pred[pred.network_a.str.contains("-FT") & pred.network_b.str.contains("-FT")]
above_o = (pred_ft.error_agreement > pred_ft.independent_baseline).mean()
excl = corr[(corr.ci_high < 0) | (corr.ci_low > 0)]
ours_r = g_cca.groupby("stage")[["similarity", "relative_gain"]].apply(
    lambda d: d.similarity.corr(d.relative_gain) if len(d) >= 3 else np.nan)
gains = runs[runs.source != "random"].relative_gain
booktext.glue(
    bn_line=bn_line, freeze_line=freeze_line, bn_summary=bn_summary,
    above_baseline=above_o, n_pred_pairs=len(pred_ft), kappa_median=f"{pred_ft.kappa.median():.2f}",
    pred_note=(" Networks fine-tuned from different starts make correlated errors in both."
               if above_o > 0.5 and above_all > 0.5 else ""),
    r_gain_sign="negative at every stage for both sources" if (corr.r < 0).all() else "of mixed sign",
    r_gain_min=corr.r.min(), r_gain_max=corr.r.max(),
    r_gain_excluded=", ".join(f"{a} {b}" for a, b in zip(excl.source, excl.stage)) or "no stage",
    gain_r_min=f"{np.nanmin(ours_r):.2f}", gain_r_max=f"{np.nanmax(ours_r):.2f}",
    gain_min=f"{gains.min():+.3f}", gain_max=f"{gains.max():+.3f}", max_test=int(runs.n_test.max()))

# %% [markdown]
# - **Depth.** [R]: a network and its fine-tuned self are most similar at conv1 ({glue:text}`r_pf_conv1:.2f`) and
#   least at block4 ({glue:text}`r_pf_block4:.2f`). Ours: {glue:text}`pf_first:.2f` at the stem and
#   {glue:text}`pf_last:.2f` at {glue:text}`last_layer`: {glue:text}`depth_direction`.
# - **Floor.** [R]'s two untrained networks give {glue:text}`r_floor_min:.2f`–{glue:text}`r_floor_max:.2f` beyond
#   conv1, ours {glue:text}`floor_min:.2f`–{glue:text}`floor_max:.2f`. {glue:text}`floor_sentence`
# - **A network against its own start, against the floor.** Below the floor in [R] at
#   {glue:text}`r_below_floor`, in ours at {glue:text}`below_floor`{glue:text}`below_note`.
# - **BatchNorm statistics (our control).** {glue:text}`bn_line`
# - **Freeze vs no freeze.** {glue:text}`freeze_line`
# - **Prediction similarity.** [R]'s observed agreement is above its as-coded baseline in
#   {glue:text}`r_above_baseline:.0%` of its cells and above the whole range of the correct baseline in
#   {glue:text}`r_above_all:.0%`; ours is above the correct baseline in {glue:text}`above_baseline:.0%` of our
#   {glue:text}`n_pred_pairs` pairs (median kappa {glue:text}`kappa_median`).{glue:text}`pred_note`
# - **Similarity vs gain.** [R]'s Pearson r is {glue:text}`r_gain_sign` ({glue:text}`r_gain_min:.2f` to
#   {glue:text}`r_gain_max:.2f`); its interval excludes 0 for {glue:text}`r_gain_excluded` when points are
#   resampled, for {glue:text}`r_n_strong_targets` stage(s) when whole targets are. Ours has
#   {glue:text}`n_points` points per stage (r = {glue:text}`gain_r_min` to {glue:text}`gain_r_max`), and our
#   sources' gains over random initialisation are small ({glue:text}`gain_min` to {glue:text}`gain_max`, one test
#   fold of at most {glue:text}`max_test` images): no conclusion either way.

# %% [markdown]
# ## Summary
# - [R]'s tables are reproduced as figures: CCA per stage with fold SDs (Figure 1, Table 1), prediction
#   similarity with both baselines (Figure 2, Table 2: [R]'s as-coded baseline uses one network's accuracy twice;
#   the tables bound the correct one), and similarity against gain with bootstrap intervals that treat points
#   or whole targets as independent (Figure 3, Table 3).
# - The same analyses run as a resumable stage (`helpers.stages.representations`, `results/<profile>/representations_*.csv`):
#   [R]'s recipe and augmentation, best checkpoints in safetensors, CCA, linear CKA and debiased CKA for every
#   pair of networks at every stage with a permutation null, the points n and channels d of every cell, the
#   prediction similarity with the correct baseline and kappa, and the weight change per stage.
# - A CCA value means little without its floor and null: two untrained networks, and the same networks shown
#   different images of the target (the permutation null), set the scale against which "similar" has to be read
#   (Figures 6–8, Table 8). What the BatchNorm control shows on this run:
#   - {glue:text}`bn_summary`
#
# ## What's next
# [R]'s question, how much of a source's benefit survives fine-tuning, has a ground-truth side: the longer a
# target is fine-tuned, the closer the sources end up and the less their ranking says. The
# [Fine-tuning chapter's wash-out section](03_finetuning) measures it (spread between sources, seed noise and
# reliability against training length and data size).
#
# The paper profile runs [R]'s recipe on ResNet-50 with ImageNet, a RadImageNet checkpoint (its input scale an
# option: [R]'s caffe-style 0–255 inputs or RadImageNet's 1/255), random initialisation and 5 folds on a GPU.
# The [References](../references) list the publications.

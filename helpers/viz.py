"""Figures shared by the chapters (matplotlib; every function returns the Figure it drew).

matplotlib and seaborn are in the package's ``book`` extra (``pip install ".[book]"``), not in its core
dependencies, so they are imported when a figure is drawn, not when this module is imported.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import torch

from . import similarity as S
from .data import HALF_MEAN, HALF_STD, MedMNISTData, TensorImageDataset, sample_indices
from .reference_r import STAGES
from .reliability import spearman_brown
from .representations import network_name, similarity_matrix


def pyplot():
    """``matplotlib.pyplot``, or an ImportError that says which extra brings it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("helpers.viz draws with matplotlib, which the package's 'book' extra installs: "
                          'pip install ".[book]" (or pip install matplotlib seaborn)') from exc
    return plt


def sample_grid(data: MedMNISTData, split: str = "train", per_class: int = 6, seed: int = 0):
    """One row per class, ``per_class`` random images of that class (fixed seed)."""
    plt = pyplot()
    idx = sample_indices(data, split, per_class, seed)
    y = data.labels[split]
    cls = y.argmax(1) if data.multilabel else y[:, 0]
    fig, axes = plt.subplots(data.n_classes, per_class, figsize=(1.1 * per_class + 2.2, 1.1 * data.n_classes),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(data.n_classes):
        row = [i for i in idx if cls[i] == k]
        for j, i in enumerate(row):
            img = data.images[split][i]
            axes[k, j].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        name = textwrap.shorten(f"{k}: {data.class_names[k]}", 28)
        axes[k, 0].text(-0.1, 0.5, name, transform=axes[k, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{data.flag} ({split} split, {data.size} px)", fontsize=10)
    fig.tight_layout()
    return fig


def class_count_bars(counts, flag: str):
    """Bar chart of images per class and split from a :func:`helpers.data.class_count_table` table."""
    plt = pyplot()
    import seaborn as sns

    sub = counts[counts["flag"] == flag]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * sub["class_id"].nunique() + 2), 2.8))
    sns.barplot(data=sub, x="class_id", y="count", hue="split", ax=ax)
    ax.set_xlabel("class id")
    ax.set_ylabel("images")
    ax.set_title(f"{flag}: images per class and split")
    fig.tight_layout()
    return fig


def reliability_plot(summary: pd.DataFrame, n_replicates: int, level: float, replicate: str = "seed"):
    """The reliability figure of a ground truth (the Fine-tuning and Segmentation chapters): left, per target
    and over all targets (rows of :func:`helpers.reliability.reliability_summary`), the one-replicate
    reliability with its interval and the split-half reliability of the mean; right, the Spearman-Brown
    prophecy for a mean of k replicates per target, the ``n_replicates`` that ran dashed and ``level``
    dotted. ``replicate`` names a replicate in the labels (``"seed"``)."""
    plt = pyplot()
    per_t = summary.iloc[:-1]
    k_grid = list(range(1, max(30, int(per_t["needed"].replace(float("inf"), 0).max()) + 2)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    ax = axes[0]
    y = range(len(summary))
    ax.errorbar(summary["r1"], y, xerr=[summary["r1"] - summary["r1_low"], summary["r1_high"] - summary["r1"]],
                fmt="o", color="k", capsize=3, label=f"one {replicate} (ICC, 90 % interval)")
    ax.plot(summary["split_half"], y, "s", color="tab:orange", label=f"split-half (mean of n_split {replicate}s)")
    ax.set_yticks(list(y), summary["target"])
    ax.axvline(level, color="tab:red", ls=":", lw=1)
    ax.set_xlabel("reliability")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # below: no row hidden
    ax = axes[1]
    for _, row in per_t.iterrows():
        ax.plot(k_grid, [spearman_brown(max(row["r1"], 0.0), k) for k in k_grid], label=row["target"])
    ax.axhline(level, color="tab:red", ls=":", lw=1)
    ax.axvline(n_replicates, color="gray", ls="--", lw=1)
    ax.set_xlabel(f"{replicate}s averaged")
    ax.set_ylabel("reliability of the mean")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fold_sizes_plot(folds, flag: str):
    """Per fold, train and val subset sizes from a :func:`helpers.data.fold_table` table."""
    plt = pyplot()
    sub = folds[(folds["flag"] == flag) & (folds["split"] != "test")]
    sizes = sub.groupby(["fold", "split"])["subset_size"].first().unstack("split")
    fig, ax = plt.subplots(figsize=(5.0, 2.6))
    sizes.plot.bar(ax=ax, rot=0)
    ax.legend(title="split", bbox_to_anchor=(1.02, 1), loc="upper left", frameon=False)
    ax.set_ylabel("images")
    ax.set_title(f"{flag}: fold subsets")
    fig.tight_layout()
    return fig


def augmentation_grid(data: MedMNISTData, image_size: int, n_images: int = 4, n_views: int = 6, seed: int = 0,
                      augment=None, title: str | None = None):
    """Rows: training images; first column the evaluation view, then ``n_views`` augmented views, all made
    by :class:`helpers.data.TensorImageDataset` on its device exactly as training sees them (denormalised).
    ``augment``: the augmentation config (default [D]'s :class:`helpers.transforms.AugmentConfig`)."""
    plt = pyplot()
    per_class = -(-n_images // data.n_classes)  # ceil: enough images per class to fill n_images rows
    idx = sample_indices(data, "train", per_class=per_class, seed=seed)[:n_images]
    ds = TensorImageDataset(data.images["train"][idx], data.labels["train"][idx], image_size,
                            mean=HALF_MEAN, std=HALF_STD, augment=augment)
    gen = torch.Generator(device=ds.device).manual_seed(seed)
    rows = torch.arange(len(idx), device=ds.device)
    views = [ds.batch(rows)[0]] + [ds.batch(rows, augment=True, generator=gen)[0] for _ in range(n_views)]
    fig, axes = plt.subplots(len(idx), n_views + 1, figsize=(1.1 * (n_views + 1), 1.15 * len(idx)), squeeze=False)
    for j, v in enumerate(views):
        img = (v * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        for i in range(len(idx)):
            axes[i, j].imshow(img[i])
            axes[i, j].axis("off")
        axes[0, j].set_title("eval" if j == 0 else f"aug {j}", fontsize=8)
    fig.suptitle(title or f"{data.flag}: device-side augmentation at {image_size} px", fontsize=10)
    fig.tight_layout()
    return fig


def segmentation_grid(datasets, n_images: int = 4, split: str = "train", seed: int = 0):
    """One row per segmentation set: ``n_images`` random images of ``split`` (fixed seed) with their masks
    drawn as coloured contours (one colour per foreground class). ``datasets``: loaded
    :class:`helpers.segmentation.SegmentationData` objects."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(len(datasets), n_images, figsize=(1.6 * n_images + 1.6, 1.6 * len(datasets)),
                             squeeze=False)
    for r, d in enumerate(datasets):
        images, masks = d.split(split)
        idx = np.sort(np.random.default_rng(seed).choice(len(images), min(n_images, len(images)), replace=False))
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c >= len(idx):
                continue
            img, m = images[idx[c]], masks[idx[c]]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            for k in range(1, d.n_classes):
                if (m == k).any():
                    ax.contour(m == k, levels=[0.5], colors=[colours[(k - 1) % 10]], linewidths=0.8)
        axes[r, 0].text(-0.08, 0.5, d.name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
        handles = [Line2D([], [], color=colours[(k - 1) % 10], lw=1.5) for k in range(1, d.n_classes)]
        axes[r, -1].legend(handles, d.class_names[1:], loc="center left", bbox_to_anchor=(1.02, 0.5),
                           fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------
# hidden representations ([R], :mod:`helpers.representations`): [R]'s published figures and ours


_LAYER_ORDER = list(S.RESNET_LAYERS)
_KIND_STYLE = {
    "pretrained_vs_finetuned": ("tab:blue", "-"), "finetuned_across_sources": ("tab:orange", "-"),
    "pretrained_across_sources": ("tab:green", "-"), "vs_untrained": ("tab:purple", "-"),
    "untrained_vs_untrained": ("black", "--"), "freeze_vs_no_freeze": ("tab:red", "-"),
    "untrained_vs_finetuned": ("tab:brown", ":"), "recalibrated_vs_finetuned": ("tab:cyan", "-."),
    "pretrained_vs_recalibrated": ("tab:olive", "-."), "other": ("tab:gray", ":"),
}


def _stage_axis(ax, layers):
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([S.R_STAGE_OF_LAYER.get(l, l) for l in layers], fontsize=8)


def plot_reference_cca(summary: pd.DataFrame, pairs=None, ncols: int = 4):
    """[R]'s CCA per stage (:func:`helpers.reference_r.cca_summary`): one panel per target, one line per pair
    (mean over folds) with a band of +- 1 SD over folds."""
    plt = pyplot()

    pairs = pairs or ["ImageNet-FT vs ImageNet", "RadImageNet-FT vs RadImageNet", "ImageNet-FT vs RadImageNet-FT",
                      "ImageNet vs RadImageNet", "ImageNet-FT vs random", "random vs random"]
    targets = list(dict.fromkeys(summary.target))
    nrows = -(-len(targets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, t in zip(axes.ravel(), targets):
        for i, p in enumerate(pairs):
            sub = summary[(summary.target == t) & (summary.pair == p)].set_index("stage").reindex(list(STAGES))
            if sub["mean"].isna().all():
                continue
            x = np.arange(len(STAGES))
            style = "--" if p == "random vs random" else "-"
            ax.plot(x, sub["mean"], style, color="black" if p == "random vs random" else colors[i % len(colors)],
                    label=p, lw=1.4)
            ax.fill_between(x, sub["mean"] - sub["sd"], sub["mean"] + sub["sd"], alpha=0.2,
                            color="black" if p == "random vs random" else colors[i % len(colors)])
        ax.set_xticks(range(len(STAGES)))
        ax.set_xticklabels(STAGES, fontsize=7)
        ax.set_title(t, fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes.ravel()[len(targets):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("mean CCA")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", fontsize=7, frameon=False,
               bbox_to_anchor=(0.98, 0.05) if len(targets) % ncols else (0.98, -0.08))
    fig.tight_layout()
    return fig


def plot_reference_predictions(pred: pd.DataFrame):
    """[R]'s prediction similarity (:func:`helpers.reference_r.load_prediction_similarity`) per target and
    freeze variant: observed error agreement (bar, mean over folds), [R]'s as-coded baseline (x) and the range of
    the correct independent-errors baseline the tables allow (vertical line, low to high)."""
    plt = pyplot()

    g = pred.groupby(["freeze", "target"]).mean(numeric_only=True).reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.0), sharey=True)
    for ax, (freeze, sub) in zip(axes, g.groupby("freeze")):
        x = np.arange(len(sub))
        ax.bar(x, sub.observed, color="tab:blue", alpha=0.7, label="observed (both right or both wrong)")
        ax.scatter(x, sub.r_baseline, marker="x", color="tab:red", zorder=3, label="[R]'s baseline as coded")
        ax.vlines(x + 0.18, sub.correct_baseline_low, sub.correct_baseline_high, color="k", lw=2,
                  label="correct baseline: range the tables allow")
        ax.set_xticks(x)
        ax.set_xticklabels(sub.target, rotation=40, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"ImageNet-FT vs RadImageNet-FT, freeze={freeze}", fontsize=9)
    axes[0].set_ylabel("agreement")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_gain_scatter(table: pd.DataFrame, x: str, y: str = "relative_gain", hue: str = "source",
                      panel: str = "stage", xlabel: str | None = None, panels=None):
    """One panel per ``panel`` value: ``x`` against ``y`` per point, coloured by ``hue``, with the least-squares
    line over all points of the panel and Pearson's r in the title."""
    plt = pyplot()

    panels = list(panels or dict.fromkeys(table[panel]))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.6), sharey=True, squeeze=False)
    hues = list(dict.fromkeys(table[hue]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, p in zip(axes[0], panels):
        sub = table[table[panel] == p].dropna(subset=[x, y])
        for i, h in enumerate(hues):
            s = sub[sub[hue] == h]
            ax.scatter(s[x], s[y], s=14, color=colors[i % len(colors)], label=str(h), alpha=0.8)
        if len(sub) >= 3 and sub[x].std() > 0:
            b, a = np.polyfit(sub[x], sub[y], 1)
            xs = np.linspace(sub[x].min(), sub[x].max(), 10)
            ax.plot(xs, a + b * xs, color="k", lw=1)
            ax.set_title(f"{p}: r = {np.corrcoef(sub[x], sub[y])[0, 1]:.2f}", fontsize=9)
        else:
            ax.set_title(str(p), fontsize=9)
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set_xlabel(xlabel or x, fontsize=8)
    axes[0, 0].set_ylabel(y.replace("_", " "))
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _null_label(sim: pd.DataFrame) -> str:
    kinds = sorted({k for k in sim.get("null_kind", pd.Series(["positions"])).dropna() if not k.startswith("none")})
    name = {"images": "images deranged", "positions": "positions shuffled"}
    return "null, " + " / ".join(name.get(k, k) for k in kinds) + " (+- 2 SD)" if kinds else "null"


def plot_similarity_by_stage(sim: pd.DataFrame, measure: str = "cca", kinds=None, layers=None):
    """Our similarity per stage: one panel per target, one line per pair kind (mean over pairs, repeats and
    folds) with a band of +- 1 SD, and the permutation null (``null_kind``: by default whole images deranged
    within each cell) as a pink band, mean +- 2 SD over every cell of the target and layer."""
    plt = pyplot()

    layers = layers or [l for l in _LAYER_ORDER if l in set(sim.layer)]
    sub = sim[sim.measure == measure]
    kinds = kinds or [k for k in _KIND_STYLE if k in set(sub.kind) and k != "other"]
    targets = list(dict.fromkeys(sub.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.0), sharey=True, squeeze=False)
    x = np.arange(len(layers))
    for ax, t in zip(axes[0], targets):
        st = sub[sub.target == t]
        null = st.groupby("layer")["null_value"].agg(["mean", "std"]).reindex(layers)
        ax.fill_between(x, null["mean"] - 2 * null["std"], null["mean"] + 2 * null["std"], color="tab:pink",
                        alpha=0.45, label=_null_label(st))
        for k in kinds:
            g = st[st.kind == k].groupby("layer")["value"].agg(["mean", "std"]).reindex(layers)
            if g["mean"].isna().all():
                continue
            color, ls = _KIND_STYLE[k]
            ax.plot(x, g["mean"], ls, color=color, label=k.replace("_", " "), lw=1.5, marker="o", ms=3)
            ax.fill_between(x, g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), color=color, alpha=0.15)
        _stage_axis(ax, layers)
        ax.set_title(t, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel(measure.replace("_", " "))
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig



def plot_similarity_heatmaps(sim: pd.DataFrame, target: str, fold: int, measure: str, layers=None):
    """One heatmap per layer of :func:`helpers.representations.similarity_matrix` (networks in the same order in every panel)."""
    plt = pyplot()

    layers = layers or [l for l in _LAYER_ORDER if l in set(sim.layer)]
    fig, axes = plt.subplots(1, len(layers), figsize=(2.6 * len(layers) + 0.8, 3.3), squeeze=False,
                             constrained_layout=True)
    for i, (ax, layer) in enumerate(zip(axes[0], layers)):
        m = similarity_matrix(sim, target, fold, layer, measure)
        im = ax.imshow(m.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(m)))
        ax.set_yticks(range(len(m)))
        ax.set_xticklabels(m.columns, rotation=90, fontsize=6)
        ax.set_yticklabels(m.index if i == 0 else [""] * len(m), fontsize=6)
        ax.set_title(S.R_STAGE_OF_LAYER.get(layer, layer), fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.7, fraction=0.02, pad=0.01, label=measure.replace("_", " "))
    return fig


def plot_prediction_bars(pred: pd.DataFrame):
    """Our prediction similarity: one panel per target, one group per pair of fine-tuned networks: error
    agreement (bar), the correct independent-errors baseline (o) and [R]'s as-coded one (x), kappa on top."""
    plt = pyplot()

    targets = list(dict.fromkeys(pred.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.0 * len(targets), 3.2), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], targets):
        sub = pred[pred.target == t].groupby(["network_a", "network_b"], sort=False).mean(numeric_only=True).reset_index()
        x = np.arange(len(sub))
        ax.bar(x, sub.error_agreement, color="tab:blue", alpha=0.7, label="error agreement")
        ax.scatter(x, sub.independent_baseline, marker="o", color="k", zorder=3, label="independent (correct)")
        ax.scatter(x, sub.r_baseline_as_coded, marker="x", color="tab:red", zorder=3, label="[R]'s as coded")
        for xi, (ea, k) in enumerate(zip(sub.error_agreement, sub.kappa)):
            ax.text(xi, min(ea + 0.02, 1.0), f"κ={k:.2f}", ha="center", fontsize=7)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{a}\nvs {b}" for a, b in zip(sub.network_a, sub.network_b)], fontsize=7)
        ax.set_ylim(0, 1.1)
        ax.set_title(t, fontsize=9)
    axes[0, 0].set_ylabel("fraction of test images")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_weight_change(weights: pd.DataFrame, stages=("conv1", "layer1", "layer2", "layer3", "layer4")):
    """Relative L2 change of the conv weights per stage (this project's extension): one panel per target, one
    line per fine-tuned network."""
    plt = pyplot()

    targets = list(dict.fromkeys(weights.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.0 * len(targets), 2.8), sharey=True, squeeze=False)
    x = np.arange(len(stages))
    for ax, t in zip(axes[0], targets):
        sub = weights[weights.target == t]
        for (source, variant), g in sub.groupby(["source", "variant"], sort=False):
            v = g.groupby("stage")["relative_change"].mean().reindex(list(stages))
            name = network_name({"role": "finetuned", "source": source, "variant": variant})
            ax.plot(x, v, marker="o", ms=3, label=name)
        ax.set_xticks(x)
        ax.set_xticklabels(stages, fontsize=8)
        ax.set_title(t, fontsize=9)
    axes[0, 0].set_ylabel("|W_ft - W_0| / |W_0|")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig

"""Figures shared by the chapters (matplotlib; every function returns the Figure it drew).

matplotlib and seaborn are in the package's ``book`` extra (``pip install ".[book]"``), not in its core
dependencies, so they are imported when a figure is drawn, not when this module is imported.
"""
from __future__ import annotations

import textwrap

import numpy as np

from .data import MedMNISTData, sample_indices


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
    import torch

    from .data import HALF_MEAN, HALF_STD, TensorImageDataset

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

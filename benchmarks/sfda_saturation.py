"""SFDA's saturation on small targets, and which remedy keeps its ranking where it does not saturate.

Usage::

    python benchmarks/sfda_saturation.py               # builds (or reuses) a pool of sources, prints the table
    python benchmarks/sfda_saturation.py --out benchmarks/results/sfda_saturation.txt

The reference SFDA (``helpers.metrics.sfda(reduce=None)``) evaluates its LDA on the samples it was fitted on;
with N ~ 200 images and D = 512 features the classes are separable, the adaptive shrinkage underflows, and the
score is exactly 1.0 for every source ([D]'s binary targets). A remedy must (a) not saturate there and (b) rank
sources as the reference does where the reference is informative. This script measures both on real data:

* a pool of real sources per target: ResNet-18s trained at 28 px on each *other* available MedMNIST flag for
  1, 3 and 8 epochs (600 images, MedMNIST's Adam recipe, no augmentation; cached under ``--cache``), plus two
  randomly initialised networks;
* penultimate features (float32) of the target's train images at several N;
* (a) per N, how many sources each form scores at exactly 1.0 (within 1e-9) and the spread of its scores;
* (b) where the reference saturates for no source, Kendall's tau between the reference's ranking of the sources
  and each remedy's at the same N (mean over the targets and N; 1 = same order);
* (c) the question a saturated target really asks: does a remedy at small N rank the sources as the reference
  does with enough images? For each target whose reference ranking at the largest N is informative, Kendall's
  tau between each form at every N and that reference ranking.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import metrics as MT  # noqa: E402
from helpers import models as M  # noqa: E402
from helpers.data import TensorImageDataset, available_flags, load_medmnist  # noqa: E402
from helpers.stages.pretraining import pretrain_unit  # noqa: E402

FORMS = [None, "pca16", "pca32", "pca64", "pca128", "crossfit"]


def form_name(form) -> str:
    return "reference" if form is None else str(form)


def build_pool(flags, cache: Path, root=None, epochs=(1, 3, 8)) -> dict:
    """{name: checkpoint path} of sources trained on each flag for each epoch budget (cached)."""
    pool = {}
    for flag in flags:
        for ep in epochs:
            name = f"{flag}_e{ep}"
            recipe = {"epochs": ep, "batch_size": 64, "optimizer": {"name": "adam", "lr": 1e-3},
                      "milestones": [50, 75], "gamma": 0.1, "monitor": "val_auc", "patience": None,
                      "max_train_images": 600, "max_val_images": 200, "augment": False}
            path = cache / "sources" / f"{name}.safetensors"
            if not path.is_file():
                config = {"stage": "pretraining", "kind": "single_dataset", "name": name, "flags": [flag],
                          "file_size": 28, "image_size": 28, "recipe": recipe, "seed": 0}
                t0 = time.perf_counter()
                pretrain_unit(config, cache / "work" / name, cache, root=root, device="cpu")
                print(f"# trained {name} in {time.perf_counter() - t0:.0f} s", flush=True)
            pool[name] = path
    return pool


def features(spec, seed: int, d, idx) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    model = M.build_model("resnet18", None, spec)
    mean, std = M.normalization_for(spec)
    ds = TensorImageDataset.from_medmnist(d, "train", 28, indices=idx, mean=mean, std=std)
    f, _, y = M.extract(model, ds)
    return f.numpy(), y.numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache" / "sfda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000, 2000])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    warnings.simplefilter("ignore")
    flags = available_flags(28)
    pool = build_pool(flags, args.cache)
    lines = [f"# benchmarks/sfda_saturation.py: flags {flags}, sources trained on the other flags for "
             f"1/3/8 epochs + 2 random inits; forms {[form_name(f) for f in FORMS]}",
             f"{'target':15s} {'N':>5s} {'C':>2s} {'src':>3s} " + " ".join(f"{form_name(f) + ' sat':>14s}"
                                                                          for f in FORMS)
             + "  " + " ".join(f"{'tau ' + form_name(f):>13s}" for f in FORMS[1:])]
    taus = {f: [] for f in FORMS[1:]}
    to_large = {f: {} for f in FORMS}  # form -> N -> taus against the reference at the target's largest N
    saturated = {f: 0 for f in FORMS}
    cells = 0
    for target in flags:
        d = load_medmnist(target, size=28)
        sources = {k: v for k, v in pool.items() if not k.startswith(target)}
        sources.update({"random_s0": "random", "random_s1": "random"})
        n_train = len(d.labels["train"])
        by_n = {}
        for N in sorted({min(n, n_train) for n in args.sizes}):
            idx = np.random.default_rng(0).permutation(n_train)[:N]
            F = {s: features(spec, int(s[-1]) if spec == "random" else 0, d, idx) for s, spec in sources.items()}
            scores = {f: np.array([MT.sfda(*F[s], remedy=f) for s in sources]) for f in FORMS}
            by_n[N] = scores
            sat = {f: int((scores[f] > 1 - 1e-9).sum()) for f in FORMS}
            for f in FORMS:
                saturated[f] += sat[f]
            cells += len(sources)
            row = f"{target:15s} {N:5d} {d.n_classes:2d} {len(sources):3d} " + " ".join(
                f"{sat[f]:>5d} ({np.ptp(scores[f]):.3f})" for f in FORMS)
            if sat[None] == 0:
                for f in FORMS[1:]:
                    taus[f].append(kendalltau(scores[None], scores[f]).statistic)
                row += "  " + " ".join(f"{taus[f][-1]:>13.2f}" for f in FORMS[1:])
            else:
                row += "  " + " ".join(f"{'(ref. sat.)':>13s}" for f in FORMS[1:])
            lines.append(row)
            print(row, flush=True)
        largest = max(by_n)
        ref_large = by_n[largest][None]
        if (ref_large > 1 - 1e-9).any():
            continue
        for N, scores in by_n.items():
            if N == largest:
                continue
            for f in FORMS:
                if (scores[f] > 1 - 1e-9).sum() > 1:
                    continue  # tied at 1.0: no ranking to compare
                to_large[f].setdefault(N, []).append(kendalltau(ref_large, scores[f]).statistic)
    lines.append("# sat = sources scored exactly 1.0 (spread of the scores in brackets); tau = Kendall tau with "
                 "the reference ranking where the reference saturates for no source")
    lines.append("# totals: saturated scores " + ", ".join(f"{form_name(f)} {saturated[f]}/{cells}" for f in FORMS))
    lines.append("# (b) mean tau with the reference at the same N where it is informative (" + str(len(taus[FORMS[1]]))
                 + " cases): " + ", ".join(f"{form_name(f)} {np.mean(taus[f]):+.2f}" for f in FORMS[1:]))
    sizes = sorted({n for f in FORMS for n in to_large[f]})
    lines.append("# (c) mean tau at N with the reference at the target's largest N (targets where it is "
                 "informative; '-' = the form ties sources at 1.0):")
    for N in sizes:
        lines.append(f"#   N={N:5d}: " + ", ".join(
            f"{form_name(f)} " + (f"{np.mean(to_large[f][N]):+.2f} ({len(to_large[f][N])})" if N in to_large[f] else "-")
            for f in FORMS))
    text = "\n".join(lines) + "\n"
    print("\n".join(lines[-(3 + len(sizes)):]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()

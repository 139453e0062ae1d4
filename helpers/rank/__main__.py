"""Command line: ``python -m helpers.rank --target T --candidates C1,C2,... --out ranking.csv``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EPILOG = """\
targets:    a folder with one sub-folder per class; an .npz with 'images' and 'labels'; a .csv with a path
            column and one column per label (multi-label); a MedMNIST flag, e.g. breastmnist or breastmnist:test
candidates: ARCH (torchvision, ImageNet weights), ARCH:random, ARCH:IMAGENET1K_V2, ARCH:path/to/ckpt.pt,
            path/to/ckpt.safetensors (with its JSON sidecar), timm:NAME[:random], or a trained source of the
            project by name (results/<profile>/sources/<name>.safetensors); add @SIZE for the input size
output:     OUT (one row per candidate and metric, 'recommendation' rows last) and beside it
            OUT_candidates.csv, OUT_replicates.csv, OUT_target.json
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.rank", description="Rank candidate pre-trained "
                                     "models on your labelled images.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="folder, .npz, .csv or MedMNIST flag[:split]")
    parser.add_argument("--candidates", required=True, help="comma-separated candidates")
    parser.add_argument("--out", default="ranking.csv", help="output CSV (default ranking.csv)")
    parser.add_argument("--metrics", default=None, help="comma-separated metrics (default: all that apply)")
    parser.add_argument("--recommend", default=None,
                        help="metrics of the combined recommendation (default lp_fu,knn_accuracy,linear_probe)")
    parser.add_argument("--max-images", type=int, default=2000, help="target images used (default 2000; 0: all)")
    parser.add_argument("--image-size", type=int, default=None, help="input size for every candidate "
                        "(default: each candidate's own)")
    parser.add_argument("--split", default=None, help="MedMNIST split: fold1 (default), train, val, test")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when present)")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default: <out folder>/rank_cache; "
                        "'none' to switch it off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=100, help="bootstrap replicates (default 100)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--profile", default="quick", help="profile whose results/<profile>/sources holds the "
                        "project's trained sources (default quick)")
    parser.add_argument("--sources-dir", default=None, help="folder of trained sources (overrides --profile)")
    parser.add_argument("--data-root", default=None, help="data root for MedMNIST targets")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    from . import DEFAULT_RECOMMEND, RankInputError, rank_models

    out = Path(args.out)
    cache = None if (args.cache_dir or "").lower() == "none" else (args.cache_dir or out.parent / "rank_cache")
    try:
        result = rank_models(args.target, args.candidates, metrics=args.metrics,
                             recommend=args.recommend or DEFAULT_RECOMMEND,
                             max_images=args.max_images or None, seed=args.seed, n_boot=args.n_boot,
                             device=args.device, cache_dir=cache, image_size=args.image_size,
                             profile=args.profile, sources_dir=args.sources_dir, data_root=args.data_root,
                             split=args.split, batch_size=args.batch_size, progress=not args.quiet)
    except RankInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    result.write(out)
    import pandas as pd

    cols = ["name", "status", "score", "rank", "p_first", "rank_low", "rank_high", "reason"]
    with pd.option_context("display.width", 200, "display.max_colwidth", 70):
        print(f"target {result.target['target']}: {result.target['description']}")
        print(result.recommendation[cols].rename(columns={"score": "mean_rank"}).to_string(index=False))
    for m, cause in result.reduced.items():
        print(f"warning: the recommendation is reduced: {m} {cause}", file=sys.stderr)
    best = result.best
    print(f"recommended: {best}" + (" (reduced recommendation, see the warnings)" if result.reduced else "")
          if best else "no candidate could be ranked")
    if best:
        print(result.verdict().replace("`", ""))
    print(f"wrote {out}")
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())

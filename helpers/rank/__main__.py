"""Command line: ``python -m helpers.rank --target T --candidates C1,C2,... --out ranking.csv``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# helpers (and with it helpers.threads' passive OpenMP waiting) is imported before this module runs
from ..paths import results_root
from ..sources import sources_dir
from . import DEFAULT_RECOMMEND, RankInputError, load_target
from .. import rank as _rank  # the package's rank_models, looked up when called (tests replace it there)
from .candidates import parse_candidates
from .evidence import describe_basis
from .ranking import resolve_metrics

EPILOG = """\
targets:    a folder with one sub-folder per class; an .npz with 'images' and 'labels'; a .csv with a path
            column and one column per label (multi-label); a MedMNIST flag, e.g. breastmnist or breastmnist:test
candidates: ARCH (torchvision, ImageNet weights), ARCH:random, ARCH:IMAGENET1K_V2, ARCH:path/to/ckpt.pt,
            path/to/ckpt.safetensors (with its JSON sidecar), imagenet, radimagenet:PATH (.pt or Keras .h5),
            hf:ORG/NAME or hf:PATH (Hugging Face vision models), timm:NAME[:random], timm:hf-hub:ORG/NAME,
            timm:local-dir:PATH, or a trained source of the project by name
            (results/<profile>/sources/<name>.safetensors); add @SIZE for the input size
medical:    DICOM (files with or without .dcm, as PACS exports them) and NIfTI (.nii, .nii.gz) in class folders or
            a CSV (pip install .[medical]); a multi-frame DICOM or a 3-D/4-D NIfTI gives one image per slice,
            all of them one group (with all files of the same DICOM PatientID) that the bootstrap and the
            probe folds keep together. Rescaled to physical units (RescaleSlope/Intercept), windowed
            (--window), MONOCHROME1 inverted; int16 / float .npz images are windowed the same way
output:     OUT (one row per candidate and metric, 'recommendation' rows last) and beside it
            OUT_candidates.csv, OUT_replicates.csv, OUT_target.json (with the settings, among them
            recommend_basis: the evidence and version the default recommendation rests on, or "user's choice")
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
                        help="metrics of the combined recommendation (default "
                        f"{','.join(DEFAULT_RECOMMEND)}, derived from the public medical benchmarks: "
                        "helpers.rank.evidence)")
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
    parser.add_argument("--window", default=None, help="DICOM / NIfTI / int16 or float npz: CENTER,WIDTH (e.g. "
                        "-600,1500), a preset (ct-lung, ct-mediastinum, ct-soft-tissue, ct-abdomen, ct-liver, "
                        "ct-bone, ct-brain, ct-subdural, ct-stroke), 'file' (each file's own) or 'minmax' (one "
                        "min-max over the target); default: the file's own window, else one min-max")
    parser.add_argument("--slice-axis", default=None, help="NIfTI volumes are split into 2-D slices along this "
                        "axis: 0, 1, 2 (voxel axes, default 2) or sagittal, coronal, axial (canonical RAS+); "
                        "multi-frame DICOM along its frames")
    parser.add_argument("--central-slices", type=int, default=None, metavar="K",
                        help="keep the K central slices of every volume: a multi-frame DICOM, a NIfTI volume, "
                        "or a DICOM series of single-frame files ordered by position (default: all)")
    parser.add_argument("--group-by", default="patient", choices=["patient", "series", "file"],
                        help="DICOM images kept together in bootstrap and probe folds: by PatientID (default; "
                        "else the series, else the file), by SeriesInstanceUID, or by file")
    parser.add_argument("--skip-unreadable", action="store_true", help="leave out files that cannot be read "
                        "(counted in the target's description) instead of stopping at the first")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    out = Path(args.out)
    cache = None if (args.cache_dir or "").lower() == "none" else (args.cache_dir or out.parent / "rank_cache")
    try:
        # names first (as rank_models does), then the target with the options rank_models does not take
        resolve_metrics(args.metrics, args.recommend or DEFAULT_RECOMMEND)
        sources = args.sources_dir
        if sources is None and args.profile:
            sources = sources_dir(results_root(args.profile))
        parse_candidates(args.candidates, sources)
        target = load_target(args.target, max_images=args.max_images or None, seed=args.seed,
                             data_root=args.data_root, split=args.split, window=args.window,
                             slice_axis=args.slice_axis, central_slices=args.central_slices,
                             skip_unreadable=args.skip_unreadable, group_by=args.group_by)
        result = _rank.rank_models(target, args.candidates, metrics=args.metrics,
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
    cols = ["name", "score", "rank", "p_first", "rank_low", "rank_high"]
    rec = result.recommendation
    ok = rec[rec["status"] == "ok"]
    print(f"target {result.target['target']}: {result.target['description']}")
    if len(ok):
        print(ok[cols].rename(columns={"score": "mean_rank"}).round(3).to_string(index=False))
    for r in rec[rec["status"] != "ok"].itertuples():  # one line each, the cause's first line
        cause = " ".join(str(r.reason).split())[:160]
        print(f"  {r.name}: {r.status}: {cause}")
    for m, cause in result.reduced.items():
        print(f"warning: the recommendation is reduced: {m} {cause}", file=sys.stderr)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    best = result.best
    print(f"recommended: {best}" + (" (reduced recommendation, see the warnings)" if result.reduced else "")
          if best else "no candidate could be ranked")
    if best:
        print(result.verdict().replace("`", ""))
    print(describe_basis(result.settings.get("recommend_basis", {})))
    print(f"wrote {out}")
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())

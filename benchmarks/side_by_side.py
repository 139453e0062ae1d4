"""Fine-tuning tasks one at a time against several at once (``finetuning.side_by_side``), on this machine's CPU.

    python benchmarks/side_by_side.py            # the quick profile's recipe, random init, 2 targets x 3 folds
    python benchmarks/side_by_side.py --targets breastmnist pneumoniamnist retinamnist --side-by-side 3
    python benchmarks/side_by_side.py --stage segmentation   # the bank's fine-tuning (segmentation.side_by_side)

Runs the same (source ``random``, target, fold) tasks of a profile's fine-tuning sweep (with ``--stage segmentation``:
the (``random``, target) tasks of the segmentation bank's fine-tuning) twice, each time into a fresh
temporary results folder: first on the local engine (one task after the other), then as the chapter runs them
with ``side_by_side`` > 1 (a local Ray cluster that starts that many tasks together, each pinned to its own torch
threads). Prints both wall times (Ray's start included), their ratio, and whether every unit's test AUC is the
same in both runs: the thread count of a task is what CPU results depend on, not how many tasks share the
machine. ``random`` needs no pretrained checkpoint, so nothing but the data root is read. Ratios only: this
machine is shared and its absolute times are noisy.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _classification(args, profile, together):
    """The fine-tuning stage: (source random, target, fold) tasks; returns ``{label: (wall, test AUCs)}``."""
    from helpers.stages import finetuning as F
    from helpers.stages.launch import side_by_side_engine

    profile["data"]["folds"] = together["data"]["folds"] = args.folds  # more tasks than targets, as in the chapter
    together["finetuning"]["side_by_side"] = args.side_by_side
    engine, options = side_by_side_engine(together, "finetuning", F.RESOURCES["num_cpus"])
    _need_ray(engine)
    print(f"fine-tuning, profile {args.profile}: source random, targets {', '.join(args.targets)}, folds "
          f"1-{args.folds} ({len(args.targets) * args.folds} tasks), {len(profile['finetuning']['seeds'])} seeds "
          f"per task; Ray told {options['num_cpus']} CPUs for {args.side_by_side} tasks at once")
    out = {}
    for label, prof, eng in (("one at a time", profile, "local"), (f"{args.side_by_side} at once", together, None)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            runs, _ = F.run_finetuning(prof, ["random"], args.targets, tmp, root=args.data_root, progress=False,
                                       engine=eng)
            out[label] = (time.perf_counter() - start,
                          runs.set_index(["source", "target", "fold", "seed", "lr"])["test_auc"].sort_index())
    return out


def _segmentation(args, profile, together):
    """The segmentation bank's fine-tuning: (source random, target) tasks over every segmentation target; returns
    ``{label: (wall, test Dice)}``."""
    from helpers.stages import segmentation as SEG
    from helpers.stages.launch import side_by_side_engine

    for p in (profile, together):
        p["segmentation"]["sources"] = ["random"]  # no pretrained U-Net needed
        # one task per (source, target, seed): more seeds, more tasks to spread Ray's start over, as in the chapter
        p["segmentation"]["finetuning"] = {**p["segmentation"]["finetuning"], "seeds": list(range(args.seeds))}
    together["segmentation"]["side_by_side"] = args.side_by_side
    engine, options = side_by_side_engine(together, "segmentation", SEG.RESOURCES["finetuning"]["num_cpus"])
    _need_ray(engine)
    targets = profile["segmentation"]["targets"]
    print(f"segmentation fine-tuning, profile {args.profile}: source random, targets {', '.join(targets)}, seeds "
          f"0-{args.seeds - 1} ({len(targets) * args.seeds} tasks); Ray told {options['num_cpus']} CPUs for {args.side_by_side} tasks at once")
    out = {}
    for label, prof, eng in (("one at a time", profile, "local"), (f"{args.side_by_side} at once", together, None)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            runs, _ = SEG.run_segmentation_finetuning(prof, tmp, root=args.data_root, progress=False, engine=eng)
            out[label] = (time.perf_counter() - start, runs.set_index("key")["test_dice"].sort_index())
    return out


def _need_ray(engine):
    if engine != "ray":
        sys.exit("side_by_side > 1 needs ray: pip install '.[ray]'")


def main(argv=None):
    from helpers.profiles import load_profile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--stage", choices=["finetuning", "segmentation"], default="finetuning")
    ap.add_argument("--targets", nargs="+", default=["breastmnist", "pneumoniamnist"],
                    help="classification targets (--stage finetuning)")
    ap.add_argument("--folds", type=int, default=3, help="[D]'s folds 1..N of each target: one task each")
    ap.add_argument("--seeds", type=int, default=6, help="fine-tuning seeds 0..N-1 (--stage segmentation)")
    ap.add_argument("--side-by-side", type=int, default=2, help="tasks at once in the second run")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)

    profile = load_profile(args.profile)
    together = copy.deepcopy(profile)
    out = (_classification if args.stage == "finetuning" else _segmentation)(args, profile, together)
    for label, (wall, values) in out.items():
        print(f"{label:>14}: {wall:7.1f} s wall, {len(values)} runs")
    (a, (wa, va)), (b, (wb, vb)) = out.items()
    same = va.equals(vb)
    print(f"ratio (one at a time / {b}): {wa / wb:.2f}x")
    print(f"test {'AUC' if args.stage == 'finetuning' else 'Dice'} of every run the same in both: "
          f"{'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

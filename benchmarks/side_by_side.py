"""Fine-tuning tasks one at a time against several at once (``finetuning.side_by_side``), on this machine's CPU.

    python benchmarks/side_by_side.py            # the quick profile's recipe, random init, 2 targets x 3 folds
    python benchmarks/side_by_side.py --targets breastmnist pneumoniamnist retinamnist --side-by-side 3

Runs the same (source ``random``, target, fold) tasks of a profile's fine-tuning sweep twice, each time into a fresh
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


def main(argv=None):
    from helpers.profiles import load_profile
    from helpers.stages import finetuning as F

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--targets", nargs="+", default=["breastmnist", "pneumoniamnist"])
    ap.add_argument("--folds", type=int, default=3, help="[D]'s folds 1..N of each target: one task each")
    ap.add_argument("--side-by-side", type=int, default=2, help="tasks at once in the second run")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)

    profile = load_profile(args.profile)
    profile["data"]["folds"] = args.folds  # more tasks than targets, as in the chapter (one per source and target)
    together = copy.deepcopy(profile)
    together["finetuning"]["side_by_side"] = args.side_by_side
    engine, options = F.side_by_side_engine(together)
    if engine != "ray":
        sys.exit("side_by_side > 1 needs ray: pip install '.[ray]'")
    seeds = profile["finetuning"]["seeds"]
    print(f"profile {args.profile}: source random, targets {', '.join(args.targets)}, folds 1-{args.folds} "
          f"({len(args.targets) * args.folds} tasks), {len(seeds)} seeds per task; "
          f"Ray told {options['num_cpus']} CPUs for {args.side_by_side} tasks at once")
    walls, aucs = {}, {}
    for label, prof, eng in (("one at a time", profile, "local"), (f"{args.side_by_side} at once", together, None)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            runs, _ = F.run_finetuning(prof, ["random"], args.targets, tmp, root=args.data_root, progress=False,
                                       engine=eng)
            walls[label] = time.perf_counter() - start
        aucs[label] = runs.set_index(["source", "target", "fold", "seed", "lr"])["test_auc"].sort_index()
        print(f"{label:>14}: {walls[label]:7.1f} s wall, {len(runs)} runs")
    (a, wa), (b, wb) = walls.items()
    same = aucs[a].equals(aucs[b])
    print(f"ratio (one at a time / {b}): {wa / wb:.2f}x")
    print(f"test AUC of every run the same in both: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

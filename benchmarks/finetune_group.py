"""One real fine-tuning group of the paper recipe: every config of one (source, target, fold) advancing together
on one device, through the stage code (:func:`helpers.stages.finetuning.finetune_group`).

    python benchmarks/finetune_group.py                       # GPU: breastmnist fold 1, the paper grid, 224 px
    python benchmarks/finetune_group.py --device cpu --configs 2 --epochs 1 --image-size 28   # a CPU check

The target's fold-1 subsets are [D]'s (PROTOCOL.md section 2) read from the data root at ``--file-size`` px and
resized on the device to ``--image-size`` (the paper profile reads 224 px files; 28 px files resized to 224
cost the same per step). The source is ``random`` (no weights needed). Prints, and with ``--save`` writes: the
configs, epochs, seconds, training images/s over all configs, peak GPU memory, and the configs per hour this
rate gives for the paper budget (``--paper-epochs`` epochs without early stopping, an upper bound).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.training import machine, peak_mb, reset_peak, sync  # noqa: E402


def main(argv=None):
    from helpers.profiles import finetune_grid, load_profile
    from helpers.stages import finetuning as F

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--target", default="breastmnist")
    ap.add_argument("--file-size", type=int, default=28, help="MedMNIST file read from the data root")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--configs", type=int, default=None, help="first N configs of the grid (default: all)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--paper-epochs", type=int, default=200)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--save", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device")

    profile = load_profile("paper")
    profile["data"]["file_size"] = args.file_size
    profile["finetuning"].update({"epochs": args.epochs, "patience": None, "image_size": args.image_size})
    grid = finetune_grid(profile, args.target)
    configs = F.finetuning_configs(profile, ["random"], [args.target], source_keys={})
    configs = [c for c in configs if c["fold"] == 1][: args.configs or len(grid)]
    train, val, test = F._sizes(configs[0])
    with tempfile.TemporaryDirectory() as tmp:
        workdirs = [Path(tmp) / str(i) for i in range(len(configs))]
        F.target_datasets(configs[0], args.data_root, device, cache := {})  # load once, outside the timing
        reset_peak(device)
        sync(device)
        start = time.perf_counter()
        rows = F.finetune_group(configs, "random", workdirs, args.data_root, device, cache, save_every_s=1e9)
        sync(device)
        seconds = time.perf_counter() - start
    if len(rows) != len(configs) or any(r["epochs_run"] != args.epochs for r in rows):
        raise SystemExit("the group did not run every config for every epoch")
    ips = len(configs) * train * args.epochs / seconds
    per_config = train * args.paper_epochs + (val * args.paper_epochs + test) / 3
    lines = [f"# benchmarks/finetune_group.py on {machine()}",
             f"# target {args.target} fold 1 ([D]'s subsets: {train} train, {val} val, {test} test images), source "
             f"random, {args.file_size} px files resized to {args.image_size} px on {device}",
             f"# paper recipe: SGD + cosine, dropout head, the paper grid for {args.target} ({len(grid)} configs); "
             f"{len(configs)} configs run together for {args.epochs} epochs (validation every epoch, test at the end)",
             f"{'configs':>8}{'epochs':>8}{'seconds':>10}{'train img/s':>13}{'peak MB':>10}"
             f"{'configs/h (' + str(args.paper_epochs) + ' ep)':>22}",
             f"{len(configs):>8}{args.epochs:>8}{seconds:>10.1f}{ips:>13.1f}{peak_mb(device):>10.0f}"
             f"{3600 * ips / per_config:>22.1f}",
             f"# best val AUC {max(r['val_auc'] for r in rows):.3f}; test AUC of the lowest-val-loss config "
             f"{min(rows, key=lambda r: r['val_loss'])['test_auc']:.3f} (after {args.epochs} epochs only)"]
    text = "\n".join(lines)
    print(text)
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(text + "\n")


if __name__ == "__main__":
    main()

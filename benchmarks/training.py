"""Fine-tuning throughput: a [D]-style loop against ours, and several runs sharing one device.

    python benchmarks/training.py                        # GPU: 224 px, batch 64, ResNet-18
    python benchmarks/training.py --image-size 64 --stored-size 28 --steps 6 --warmup 2 --workers 2 \
        --together 1,2 --save benchmarks/results/training_cpu.txt     # a CPU run, smaller sizes

(a) "[D] loop": uint8 images turned into PIL images one at a time, torchvision v2 transforms per sample
    (flip, RandomResizedCrop, rotation, sharpness, autocontrast, equalize, normalise), a DataLoader with worker
    processes, fp32, cuDNN disabled (as [D]'s code does).
(b) "ours": images resident on the device as uint8, batched augmentation there (helpers.transforms),
    channels_last + bf16 autocast on CUDA, no per-batch host synchronisation (helpers.trainer.Run).
(c) several fine-tuning runs (configs of one source/target) advancing together (helpers.trainer.train_runs):
    aggregate images/s and configs per hour for a fine-tune of ``--train-images`` images x ``--config-epochs``.

Synthetic images of ``--stored-size`` px (MedMNIST-like grey images) are used so that the benchmark needs no
data files; throughput does not depend on pixel values.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} CPU threads visible, {gpu}; torch {torch.__version__}"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device):
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# -------------------------------------------------------------------------------------------- (a) [D] loop
class PILDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.images[i]).convert("RGB")
        return self.transform(img), int(self.labels[i])


def d_loop(images, labels, args, device):
    import torchvision
    from torchvision.transforms import v2

    tf = v2.Compose([
        v2.RandomHorizontalFlip(), v2.RandomResizedCrop(args.image_size), v2.RandomRotation((0, 5)),
        v2.RandomAdjustSharpness(2), v2.RandomAutocontrast(), v2.RandomEqualize(),
        v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])
    loader = torch.utils.data.DataLoader(PILDataset(images, labels, tf), batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers, drop_last=True,
                                         persistent_workers=args.workers > 0)
    cudnn = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = False  # as [D]'s code does
    try:
        model = torchvision.models.resnet18(num_classes=2).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        reset_peak(device)
        seen, start, step = 0, None, 0
        while step < args.warmup + args.steps:
            for x, y in loader:
                if step == args.warmup:
                    sync(device)
                    start, seen = time.perf_counter(), 0
                x, y = x.to(device), y.to(device)
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss.item()  # [D]'s loop reads the loss every batch
                seen += len(x)
                step += 1
                if step >= args.warmup + args.steps:
                    break
        sync(device)
        return seen / (time.perf_counter() - start), peak_mb(device)
    finally:
        torch.backends.cudnn.enabled = cudnn


# -------------------------------------------------------------------------------------------- (b) ours
def our_runs(images, labels, args, device, k: int, compile_: bool = False):
    """Images/s (all runs together) of ``k`` runs advancing on the same batches."""
    from helpers import models as M
    from helpers.trainer import loop as T
    from helpers.data import TensorImageDataset

    ds = TensorImageDataset(images, labels, args.image_size, device=device)
    runs = []
    for i in range(k):
        cfg = T.RunConfig(epochs=1, batch_size=args.batch_size, lr=10.0 ** -(i % 5 + 1), momentum=0.9,
                          compile=compile_)
        runs.append(T.Run(M.build_model("resnet18", 2, "random"), cfg, "binary-class", device))
    reset_peak(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    n, seen, start = len(ds), 0, None
    for r in runs:
        r.start_epoch()
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(device)
            start, seen = time.perf_counter(), 0
        idx = torch.randint(0, n, (args.batch_size,), device=device, generator=gen)
        x, y = ds.batch(idx, augment=True, generator=gen)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        for r in runs:
            if r.stream is not None:
                r.stream.wait_stream(torch.cuda.current_stream(device))
            with T._stream(r):
                r.step(x, y)
        seen += len(x) * k
    T._sync_streams(runs)
    sync(device)
    for r in runs:
        float(r.loss_sum)
    return seen / (time.perf_counter() - start), peak_mb(device)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--stored-size", type=int, default=224, help="side of the stored uint8 images")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--images", type=int, default=1024, help="synthetic images in the pool")
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers of the [D] loop")
    ap.add_argument("--together", default="1,2,4,8", help="numbers of runs sharing the device")
    ap.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    ap.add_argument("--train-images", type=int, default=200, help="images per epoch of one fine-tuning config")
    ap.add_argument("--config-epochs", type=int, default=200, help="epochs of one fine-tuning config")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    ap.add_argument("--skip-d", action="store_true", help="skip the [D]-style loop")
    ap.add_argument("--save", default=None, help="also write the printed table to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, args.stored_size, args.stored_size), dtype=np.uint8)
    labels = rng.integers(0, 2, args.images)

    lines = [f"# benchmarks/training.py on {machine()}",
             f"# device {device}, ResNet-18, {args.image_size} px inputs from {args.stored_size} px uint8 images, "
             f"batch {args.batch_size}, {args.steps} timed steps after {args.warmup} warm-up, "
             f"[D] loop with {args.workers} DataLoader workers",
             f"# configs/hour: one config = {args.train_images} images x {args.config_epochs} epochs "
             "(training steps only)",
             f"{'setup':<40}{'images/s':>12}{'peak MB':>10}{'configs/h':>11}{'vs [D]':>9}"]
    per_config = args.train_images * args.config_epochs
    results = []
    if not args.skip_d:
        ips, mb = d_loop(images, labels, args, device)
        results.append(("(a) [D] loop (PIL, v2, fp32, no cuDNN)", ips, mb))
    for k in [int(v) for v in args.together.split(",") if v]:
        ips, mb = our_runs(images, labels, args, device, k)
        results.append((f"(b) ours, {k} run{'s together' if k > 1 else ''}", ips, mb))
        if args.compile and k == 1:
            ips, mb = our_runs(images, labels, args, device, k, compile_=True)
            results.append(("(b) ours + torch.compile, 1 run", ips, mb))
    base = results[0][1] if not args.skip_d else None
    for name, ips, mb in results:
        ratio = f"{ips / base:8.2f}x" if base else f"{'-':>9}"
        lines.append(f"{name:<40}{ips:12.1f}{mb:10.0f}{3600 * ips / per_config:11.2f}{ratio}")
    solo = next((ips for name, ips, _ in results if name.startswith("(b) ours, 1 run")), None)
    if solo:
        for name, ips, _ in results:
            if "together" in name and not name.startswith("(b) ours, 1 run"):
                lines.append(f"# {name}: {ips / solo:.2f}x the configs/hour of one run at a time")
    text = "\n".join(lines)
    print(text)
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()

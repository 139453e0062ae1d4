"""Peak memory and time of FU (:func:`helpers.metrics.fu`) against N and architecture, micro-batched vs single-pass.

Usage::

    python benchmarks/fu_memory.py                                   # the full grid (slow on a CPU: see below)
    python benchmarks/fu_memory.py --archs resnet18 resnet50 --sizes 60 240 --old resnet18:240 resnet50:60
    python benchmarks/fu_memory.py --loss-sizes 300 2000 10000 --archs   # only the loss rows

Each configuration runs in a fresh subprocess (``--child``), which reports its own peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``: everything torch allocated, not only Python objects), the RSS
before the FU call (interpreter, torch, model, data), the seconds of the FU call and the FU value.

Model rows: a random-init torchvision network (``torch.manual_seed(0)``, head replaced by ``Identity``, the
PROTOCOL.md section 3 layers ``conv1`` / ``layer1.0.conv1``) on N images of PneumoniaMNIST's train split (a
seeded random subset, numpy ``default_rng(0)``, in file order; about 10 % class 0; 28 px, upsampled bilinearly to
``--size`` px, 3 channels, normalised with mean/std 0.5), FU with its default batching (class-stratified, seed
0) and 6 batches, in both paths (so their values are comparable: only the gradient computation differs).

- ``new``: ``micro_batch`` (default 16) and the images passed lazily as a callable ``index -> images`` that
  upsamples only the requested images (the N x 3 x 224 x 224 tensor is never built).
- ``old``: ``micro_batch=None`` (one forward/backward of each whole batch of N/6 images, the library's triplet
  loss) and the images materialised as one (N, 3, S, S) tensor, as the callers did before. Run only for the
  (architecture, N) pairs named by ``--old`` (its memory grows with N/6; keep it where it fits).

Loss rows (``--loss-sizes``): the triplet loss's gradient alone on a batch of N/6 random 2048-dim embeddings
(ResNet-50's width; two classes 1:9 as PneumoniaMNIST): the library's ``TripletMarginLoss`` (all-triplet index
tensors, (N/6)^3 memory; run only up to ``--loss-old-max``) vs :func:`helpers.metrics.fu.triplet_margin_grad`
(chunked, (N/6)^2), with the max relative difference of the two gradients.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("conv1", "layer1.0.conv1")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child_model(arch: str, n: int, path: str, size: int, micro_batch: int, threads: int) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision

    from helpers.metrics.fu import fu
    from helpers.paths import data_root

    torch.set_num_threads(threads)
    with np.load(data_root() / "medmnist" / "pneumoniamnist.npz") as d:
        if len(d["train_labels"]) < n:
            raise SystemExit(f"PneumoniaMNIST's train split has only {len(d['train_labels'])} images")
        # a seeded random subset in file order (the file's train split is stored sorted by class)
        pick = np.sort(np.random.default_rng(0).choice(len(d["train_labels"]), n, replace=False))
        raw = torch.from_numpy(d["train_images"][pick])  # (n, 28, 28) uint8
        labels = torch.from_numpy(d["train_labels"][pick, 0].astype(np.int64))

    def images(index):
        x = raw.index_select(0, index).float().div(255)[:, None]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return ((x - 0.5) / 0.5).expand(-1, 3, -1, -1)

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)()
    model.fc = torch.nn.Identity()
    if path == "old":
        x = torch.cat([images(torch.arange(s, min(s + 64, n))) for s in range(0, n, 64)]).contiguous()
        kwargs = dict(images=x, micro_batch=None)
    else:
        kwargs = dict(images=images, micro_batch=micro_batch)
    before, c0 = _current_rss_mb(), _cpu_s()
    t0 = time.perf_counter()
    value = fu(model, *LAYERS, labels=labels, **kwargs)
    return {"fu": value, "seconds": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0, "rss_before_mb": before,
            "peak_mb": _rss_mb()}


def child_loss(n: int, path: str, threads: int) -> dict:
    import torch

    from helpers.metrics.fu import triplet_margin_grad

    torch.set_num_threads(threads)
    B = n // 6
    g = torch.Generator().manual_seed(0)
    y = (torch.arange(B) % 10 == 0).long()  # two classes, 1:9
    emb = 1 + 0.01 * torch.randn(B, 2048, generator=g)  # close together, as from a random network
    before, c0 = _current_rss_mb(), _cpu_s()
    t0 = time.perf_counter()
    if path == "old":
        from pytorch_metric_learning.losses import TripletMarginLoss

        e = emb.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(TripletMarginLoss()(e, y), e)
    else:
        grad = triplet_margin_grad(emb, y)
    out = {"seconds": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0, "rss_before_mb": before,
           "peak_mb": _rss_mb()}
    if os.environ.get("FU_BENCH_GRAD"):
        torch.save(grad, os.environ["FU_BENCH_GRAD"])
    return out


def run_child(args: list[str], threads: int, env_extra: dict | None = None) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT), **(env_extra or {})}
    proc = subprocess.run([sys.executable, __file__, "--threads", str(threads), "--child", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="*", default=["resnet18", "resnet50"])
    p.add_argument("--sizes", nargs="+", type=int, default=[60, 300, 1000, 2000])
    p.add_argument("--old", nargs="*", default=["resnet18:300", "resnet50:60"],
                   help="ARCH:MAXN: run the single-pass path for that architecture up to N = MAXN")
    p.add_argument("--paths", nargs="+", default=["new", "old"], choices=["new", "old"],
                   help="which paths of the model rows to run (old still only where --old allows)")
    p.add_argument("--size", type=int, default=224, help="image size in px")
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--loss-sizes", nargs="*", type=int, default=[300, 2000, 10000])
    p.add_argument("--loss-old-max", type=int, default=2000, help="largest N for the library's loss")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        kind, *rest = a.child
        if kind == "model":
            arch, n, path, size, mb = rest
            out = child_model(arch, int(n), path, int(size), int(mb), a.threads)
        else:
            n, path = rest
            out = child_loss(int(n), path, a.threads)
        print(json.dumps(out))
        return

    import torch

    old_max = {k: int(v) for k, v in (s.split(":") for s in a.old)}
    print(f"# helpers.metrics.fu memory benchmark  size={a.size}px  micro_batch={a.micro_batch}  "
          f"threads={a.threads}  host={platform.node()}")
    print(f"# CPU: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
          f"python {platform.python_version()}")
    print("# peak MB = the child process's ru_maxrss; before MB = its RSS just before the FU call; wall s / cpu s = "
          "the FU call's (or the loss's) wall-clock and process CPU seconds")
    if a.loss_sizes:
        import tempfile

        print("\n## the triplet loss's gradient alone, batch N/6 x 2048, two classes 1:9")
        print(f"{'N':>6} {'batch':>5} {'path':<4} {'peak MB':>8} {'before MB':>9} {'wall s':>8} {'cpu s':>8}  "
              f"{'max rel diff':>12}")
        with tempfile.TemporaryDirectory() as tmp:
            for n in a.loss_sizes:
                grads = {}
                for path in ["new"] + (["old"] if n <= a.loss_old_max else []):
                    f = os.path.join(tmp, f"{n}_{path}.pt")
                    r = run_child(["loss", str(n), path], a.threads, {"FU_BENCH_GRAD": f})
                    if "error" in r:
                        print(f"{n:>6} {n // 6:>5} {path:<4} error: {r['error']}", flush=True)
                        continue
                    grads[path] = torch.load(f)
                    diff = ""
                    if path == "old" and "new" in grads:
                        g_old, g_new = grads["old"], grads["new"]
                        diff = f"{float((g_new - g_old).abs().max() / g_old.abs().max()):.2e}"
                    print(f"{n:>6} {n // 6:>5} {path:<4} {r['peak_mb']:>8.0f} {r['rss_before_mb']:>9.0f} "
                          f"{r['seconds']:>8.2f} {r['cpu_s']:>8.2f}  {diff:>12}", flush=True)
    if a.archs:
        print("\n## FU of a random-init network, PneumoniaMNIST train images")
        print(f"{'arch':<10} {'N':>5} {'batch':>5} {'path':<4} {'peak MB':>8} {'before MB':>9} {'wall s':>8} "
              f"{'cpu s':>8} {'fu':>12}  {'|new-old|/old':>13}")
    for arch in a.archs:
        for n in a.sizes:
            paths = [q for q in ("new", "old") if q in a.paths and (q == "new" or n <= old_max.get(arch, -1))]
            res = {}
            for path in paths:
                r = res[path] = run_child(["model", arch, str(n), path, str(a.size), str(a.micro_batch)],
                                          a.threads)
                if "error" in r:
                    print(f"{arch:<10} {n:>5} {n // 6:>5} {path:<4} error: {r['error']}", flush=True)
                    continue
                diff = ""
                if path == "old" and "fu" in res.get("new", {}):
                    diff = f"{abs(res['new']['fu'] - r['fu']) / abs(r['fu']):.2e}"
                print(f"{arch:<10} {n:>5} {n // 6:>5} {path:<4} {r['peak_mb']:>8.0f} {r['rss_before_mb']:>9.0f} "
                      f"{r['seconds']:>8.1f} {r['cpu_s']:>8.1f} {r['fu']:>12.8f}  {diff:>13}", flush=True)
    total = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\n# all children together: {(total.ru_utime + total.ru_stime) / 60:.1f} CPU-minutes, largest peak "
          f"{total.ru_maxrss / 1024:.0f} MB (RUSAGE_CHILDREN)")


if __name__ == "__main__":
    main()

"""Time the representation-similarity measures of :mod:`helpers.similarity` against plain NumPy implementations of
the same formulas, in the same run.

Usage::

    python benchmarks/similarity.py                        # 10k points x 64, 512, 2048 neurons; CKA over 1e6 points
    python benchmarks/similarity.py --dims 64 512 --devices cpu
    python benchmarks/similarity.py --minibatch-points 200000 --threads 1

Data: two views of the same points, ``y = tanh(x W) + noise`` with ``x`` Gaussian with a decaying spectrum, so
every measure is strictly between 0 and 1. For each width d, one row per measure: our time per device, the
NumPy baseline's time, the speed-up (baseline / ours, on CPU) and |ours - baseline|. The baselines:

- CCA: google/svcca's arithmetic written out in NumPy: ``np.cov`` of the stacked (neurons, points) blocks,
  rescaling by the largest entry, dropping neurons below epsilon, ``+ epsilon I``, ``np.linalg.pinv``, a matrix
  square root by ``np.linalg.eigh``, ``np.linalg.svd`` (float64). Ours: three float64 products instead of one
  stacked covariance, and one ``eigh`` per side instead of ``pinv`` + ``eigh``.
- linear CKA (biased and debiased): Kornblith et al.'s feature-space formula in NumPy (float64).
- minibatch CKA over ``--minibatch-points`` points (d = ``--minibatch-dims``): ours accumulates sufficient
  statistics over batches of ``--batch`` points; the baseline is the NumPy formula on all points at once (it
  holds both (N, d) float64 matrices in memory, which is what the accumulator avoids).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

from helpers import similarity as S


def make_views(n, d, seed=0, dtype=np.float32):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, d)) / np.sqrt(np.arange(1, d + 1))
    w = g.normal(size=(d, d)) / np.sqrt(d)
    y = np.tanh(x @ w * 3) + 0.3 * g.normal(size=(n, d))
    return x.astype(dtype), y.astype(dtype)


# ------------------------------------------------------------------------------------ plain NumPy baselines

def np_cca(x, y, epsilon=1e-12):
    a1, a2 = x.T.astype(np.float64), y.T.astype(np.float64)  # (neurons, points), as google/svcca takes them
    nx = a1.shape[0]
    cov = np.cov(a1, a2)
    sxx, sxy, syy = cov[:nx, :nx], cov[:nx, nx:], cov[nx:, nx:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    kx, ky = np.abs(np.diag(sxx)) >= epsilon, np.abs(np.diag(syy)) >= epsilon
    sxx, syy, sxy = sxx[kx][:, kx], syy[ky][:, ky], sxy[kx][:, ky]

    def sqrt_psd(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(w)) @ v.T

    ixx = sqrt_psd(np.linalg.pinv(sxx + epsilon * np.eye(len(sxx))))
    iyy = sqrt_psd(np.linalg.pinv(syy + epsilon * np.eye(len(syy))))
    s = np.linalg.svd(ixx @ sxy @ iyy, compute_uv=False)
    return float(np.mean(np.abs(s)))


def np_cka(x, y, debiased=False):
    x, y = x.astype(np.float64), y.astype(np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    hxy, hxx, hyy = np.sum((x.T @ y) ** 2), np.sum((x.T @ x) ** 2), np.sum((y.T @ y) ** 2)
    if debiased:
        n = len(x)
        rx, ry = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)

        def unbias(h, ra, rb):
            return h - n / (n - 2) * ra @ rb + ra.sum() * rb.sum() / ((n - 1) * (n - 2))

        hxy, hxx, hyy = unbias(hxy, rx, ry), unbias(hxx, rx, rx), unbias(hyy, ry, ry)
    return float(hxy / np.sqrt(hxx * hyy))


def minibatch(x, y, batch, debiased):
    acc = S.MinibatchCKA(debiased)
    for i in range(0, len(x), batch):
        acc.update(x[i:i + batch], y[i:i + batch])
    return acc.value()


OURS = {"cca": S.cca, "linear_cka": S.linear_cka, "linear_cka_debiased": lambda x, y: S.linear_cka(x, y, True)}
BASE = {"cca": np_cca, "linear_cka": np_cka, "linear_cka_debiased": lambda x, y: np_cka(x, y, True)}


def timed(fn, *a):
    t = time.perf_counter()
    v = fn(*a)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return v, time.perf_counter() - t


def to_device(a, dev):
    return a if dev == "cpu" else torch.from_numpy(a).to(dev)


def row(name, d, n, times, devices, base_t, diff):
    out = f"{name:<22}{d:>6}{n:>9}" + "".join(f"{times.get(dev, float('nan')):12.3f}" for dev in devices)
    speed = base_t / times["cpu"] if "cpu" in times and times["cpu"] > 0 else float("nan")
    return out + f"{base_t:12.3f}{speed:10.1f}x{diff:14.2e}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 512, 2048])
    ap.add_argument("--minibatch-points", type=int, default=1_000_000)
    ap.add_argument("--minibatch-dims", type=int, nargs="+", default=[64])
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu + cuda if present)")
    ap.add_argument("--threads", type=int, default=None, help="torch and BLAS threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"# helpers.similarity benchmark  host={platform.node()}")
    print(f"# CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}; torch {torch.__version__}; numpy {np.__version__}; python {sys.version.split()[0]}")
    if "cuda" in devices:
        print(f"# GPU: {torch.cuda.get_device_name(0)}")
    x, y = make_views(500, 32)  # warm-up: lazy LAPACK / kernel initialisation
    for dev in devices:
        for fn in OURS.values():
            fn(to_device(x, dev), to_device(y, dev))
    hdr = (f"{'measure':<22}{'d':>6}{'n':>9}" + "".join(f"{dev + ' s':>12}" for dev in devices)
           + f"{'numpy s':>12}{'speed-up':>11}{'|ours-numpy|':>14}")
    print(f"\n## {args.points} points, float64, (points, neurons) float32 inputs")
    print(hdr)
    for d in args.dims:
        x, y = make_views(args.points, d, seed=d)
        for name in OURS:
            times, val = {}, None
            for dev in devices:
                v, t = timed(OURS[name], to_device(x, dev), to_device(y, dev))
                times[dev] = t
                val = v if val is None else val
            bv, bt = timed(BASE[name], x, y)
            print(row(name, d, args.points, times, devices, bt, abs(val - bv)), flush=True)
    if args.minibatch_points:
        n = args.minibatch_points
        print(f"\n## minibatch linear CKA, {n} points in batches of {args.batch} (numpy: all points at once)")
        print(hdr)
        for d in args.minibatch_dims:
            x, y = make_views(n, d, seed=d)
            for debiased in (False, True):
                name = "minibatch_cka" + ("_debiased" if debiased else "")
                times, val = {}, None
                for dev in devices:
                    if dev == "cpu":
                        v, t = timed(minibatch, x, y, args.batch, debiased)
                    else:  # batches start on the host, as they would stream from a feature extractor
                        v, t = timed(lambda: minibatch_device(x, y, args.batch, debiased, dev))
                    times[dev] = t
                    val = v if val is None else val
                bv, bt = timed(np_cka, x, y, debiased)
                print(row(name, d, n, times, devices, bt, abs(val - bv)), flush=True)


def minibatch_device(x, y, batch, debiased, dev):
    acc = S.MinibatchCKA(debiased)
    for i in range(0, len(x), batch):
        acc.update(torch.from_numpy(x[i:i + batch]).to(dev), torch.from_numpy(y[i:i + batch]).to(dev))
    return acc.value()


if __name__ == "__main__":
    main()

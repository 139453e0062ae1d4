"""How closely the iterative metrics (LP, NLEEP) agree with the reference fixtures, against how much the
reference itself moves from run to run.

Usage::

    python benchmarks/reference_agreement.py [--seeds 10] [--out benchmarks/results/reference_agreement.txt]

For each case of the metric fixtures (``$FIXTURES_ROOT/metrics``, see its README):

* ours: ``helpers.metrics.lp`` / ``nleep`` with their defaults, and |ours - fixture|;
* the reference computation re-run with scikit-learn as [D]'s ``metrics.py`` does it (LP: NCA to 50 dims +
  5-NN fitted and scored on the same set; NLEEP: PCA 80 % + a full-covariance GMM with 5 C components,
  float64), once with [D]'s seeds (LP: NCA ``random_state=42``; NLEEP: the GMM is unseeded in [D]) and over
  ``--seeds`` other seeds, giving the reference's own run-to-run spread (max - min, SD).

The fixture tests' tolerances (``tests/test_metrics.py``) are set from this table: a tolerance tighter than the
reference's own spread would test noise, a looser one would let real errors through.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import metrics as M  # noqa: E402
from helpers.paths import fixtures_root  # noqa: E402


def reference_lp(X, y, seed):
    from sklearn.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis

    emb = NeighborhoodComponentsAnalysis(n_components=50, random_state=seed).fit(X, y).transform(X)
    prob = KNeighborsClassifier(n_neighbors=5).fit(emb, y).predict_proba(emb)
    return float(prob[np.arange(len(y)), y].mean())


def reference_nleep(X, y, seed):
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    X = X.astype(np.float64)
    C = len(np.unique(y))
    Z = PCA(n_components=0.8, random_state=42).fit(X).transform(X)
    prob = GaussianMixture(n_components=5 * C, random_state=seed).fit(Z).predict_proba(Z)
    pyz = np.stack([prob[y == c].sum(0) for c in range(C)]) / len(y)
    py_x = prob @ (pyz / pyz.sum(0)).T
    return float(py_x[np.arange(len(y)), y].mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    fx = fixtures_root() / "metrics"
    expected = json.loads((fx / "expected.json").read_text())
    lines = ["# benchmarks/reference_agreement.py: LP and NLEEP against the fixtures and the reference's own spread",
             f"# reference re-run with scikit-learn over seeds 0..{args.seeds - 1} (LP: NCA random_state; NLEEP: "
             "GMM random_state; [D] seeds NCA with 42 and leaves the GMM unseeded)",
             f"{'case':36s} {'metric':6s} {'fixture':>8s} {'ours':>8s} {'|ours-fx|':>9s} {'ref@42':>8s} "
             f"{'ref min':>8s} {'ref max':>8s} {'ref SD':>7s} {'|fx-ref mean|':>13s}"]
    worst = {"lp": [0.0, 0.0], "nleep": [0.0, 0.0]}
    for case in sorted(expected):
        d = np.load(fx / f"{case}.npz", allow_pickle=False)
        X, y = d["features"], d["labels"].astype(np.int64)
        for metric, ours_fn, ref_fn in (("lp", M.lp, reference_lp), ("nleep", M.nleep, reference_nleep)):
            if metric not in expected[case]:
                continue
            t0 = time.perf_counter()
            ours = float(ours_fn(X, y))
            ref42 = ref_fn(X, y, 42)
            refs = np.array([ref_fn(X, y, s) for s in range(args.seeds)])
            fxv = float(expected[case][metric])
            row = (f"{case:36s} {metric:6s} {fxv:8.4f} {ours:8.4f} {abs(ours - fxv):9.4f} {ref42:8.4f} "
                   f"{refs.min():8.4f} {refs.max():8.4f} {refs.std(ddof=1):7.4f} {abs(fxv - refs.mean()):13.4f}")
            worst[metric][0] = max(worst[metric][0], abs(ours - fxv))
            worst[metric][1] = max(worst[metric][1], float(refs.max() - refs.min()))
            lines.append(row)
            print(row, f"({time.perf_counter() - t0:.0f} s)", flush=True)
    for metric, (ours_err, spread) in worst.items():
        lines.append(f"# {metric}: largest |ours - fixture| {ours_err:.4f}; largest reference range over seeds "
                     f"{spread:.4f}")
    text = "\n".join(lines) + "\n"
    print("\n".join(lines[-2:]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()

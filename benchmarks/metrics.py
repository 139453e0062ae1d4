"""Time every transferability metric of :mod:`helpers.metrics` against a plain NumPy/scikit-learn computation.

Usage::

    python benchmarks/metrics.py                       # N in 1k, 10k, 100k; D = 512; CPU (+ GPU when present)
    python benchmarks/metrics.py --sizes 1000 10000 --devices cpu
    python benchmarks/metrics.py --baseline-max 10000  # skip the (slow, O(N^2)) baselines above this N

Synthetic data: C = 5 Gaussian classes in D dimensions (class means on a random 16-dim subspace) and a
10-class source head's logits. For each N the table has one row per metric: our time per device, the
baseline's time (a direct NumPy / SciPy / scikit-learn computation of the same definition, where one
exists) and |ours - baseline|. Expected differences: PARC (ours breaks no ties by rounding residue, see
``parc(label_rdm=...)``, and runs the PCA in float64; above 5000 samples ours is subsampled), NLEEP (GMM
initialisations differ), LP (torch L-BFGS vs SciPy L-BFGS-B), linear probe (optimiser and folds differ).
At N = 10k it also prints the error of the large-N forms against their exact forms: PARC on a 5000-sample
subset, LP with NCA fitted on 3000 samples, and the query-subset form of kNN accuracy and of LP's 5-NN step
(used above 10 000 samples) with 1000 and 5000 stratified queries, seeds 0-2, next to the standard error
sqrt(acc (1 - acc) / m * (1 - m / N)) expected of a random subset of m queries.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

import helpers.metrics as M


def make_data(N, D=512, C=5, Cs=10, seed=0):
    """Features with a realistic (decaying) spectrum: a 32-dim latent with class structure, mapped to D dims,
    plus small isotropic noise (PCA keeping 80 % of the variance then keeps ~20 dims, as on real features)."""
    g = np.random.default_rng(seed)
    y = g.integers(0, C, size=N)
    y[:C] = np.arange(C)
    scales = 1.0 / np.sqrt(np.arange(1, 33))
    means = g.normal(size=(C, 32)) * 0.8
    latent = (means[y] + g.normal(size=(N, 32))) * scales
    basis = np.linalg.qr(g.normal(size=(D, 32)))[0].T * 4
    X = (latent @ basis + 0.05 * g.normal(size=(N, D))).astype(np.float32)
    W = g.normal(size=(D, Cs)) / np.sqrt(D)
    logits = (X @ W * 3).astype(np.float32)
    return X, y, logits


# ------------------------------------------------------------------------------------ plain baselines

def b_logme(X, y):
    X = X.astype(np.float64)
    N, D = X.shape
    s, V = np.linalg.eigh(X.T @ X)
    s = np.sqrt(np.clip(s, 0, None))
    keep = s > 1e-10
    s, V = s[keep], V[:, keep]
    u = X @ V / s
    sigma = s**2
    ev = []
    for c in range(y.max() + 1):
        t_ = (y == c).astype(np.float64)
        x2 = (u.T @ t_) ** 2
        res_x2 = (t_**2).sum() - x2.sum()
        a = b = 1.0
        for _ in range(11):
            t = a / b
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / (t + sigma) ** 2).sum()
            res2 = (x2 / (1 + sigma / t) ** 2).sum() + res_x2
            a, b = gamma / (m2 + 1e-5), (N - gamma) / (res2 + 1e-5)
            if abs(a / b - t) / t <= 1e-3:
                break
        ev.append((D / 2 * np.log(a) + N / 2 * np.log(b) - 0.5 * np.log(a + b * sigma).sum() - b / 2 * res2
                   - a / 2 * m2 - N / 2 * np.log(2 * np.pi)) / N)
    return float(np.mean(ev))


def b_leep(Z, y):
    Z = Z.astype(np.float64)
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    C = y.max() + 1
    joint = np.stack([P[y == c].sum(0) for c in range(C)]) / len(y)
    cond = joint / joint.sum(0)
    return float(np.mean(np.log((P @ cond.T)[np.arange(len(y)), y])))


def b_nce(Z, y):
    z = Z.argmax(1)
    joint = np.zeros((y.max() + 1, Z.shape[1]))
    np.add.at(joint, (y, z), 1.0 / len(y))
    pz = joint.sum(0, keepdims=True)
    m = joint > 0
    return float((joint[m] * np.log((joint / np.where(pz > 0, pz, 1))[m])).sum())


def b_h_score(X, y):
    X = X.astype(np.float64)
    covf = np.cov(X, rowvar=False)
    g = np.zeros_like(X)
    for c in range(y.max() + 1):
        g[y == c] = X[y == c].mean(0)
    return float(np.trace(np.linalg.pinv(covf, rcond=1e-15) @ np.cov(g, rowvar=False)))


def b_reg_h_score(X, y):
    from sklearn.covariance import LedoitWolf
    X = X.astype(np.float64)
    X = X - X.mean(0)
    lw = LedoitWolf(assume_centered=False).fit(X)
    g = np.zeros_like(X)
    for c in range(y.max() + 1):
        g[y == c] = X[y == c].mean(0)
    return float(np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * np.cov(g, rowvar=False))))


def b_transrate(X, y, eps=1e-4):
    Z = X.astype(np.float64)
    Z = Z - Z.mean(0)

    def r(A):
        return 0.5 * np.linalg.slogdet(np.eye(A.shape[1]) + A.T @ A / (A.shape[0] * eps))[1]

    K = y.max() + 1
    return float(r(Z) - sum(r(Z[y == k]) for k in range(K)) / K)


def b_gbc(X, y):
    X = X.astype(np.float64)
    C = y.max() + 1
    mu = np.stack([X[y == c].mean(0) for c in range(C)])
    var = np.stack([np.maximum(X[y == c].var(0, ddof=1), 1e-4).mean() for c in range(C)])
    tot = 0.0
    for i in range(C):
        for j in range(C):
            if i != j:
                a = (var[i] + var[j]) / 2
                bd = ((mu[i] - mu[j]) ** 2 / a).sum() / 8 + 0.5 * (np.log(a) - 0.5 * np.log(var[i]) - 0.5 * np.log(var[j]))
                tot += np.exp(-bd)
    return -tot


def b_parc(X, y):
    import scipy.stats
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    Z = PCA(32, svd_solver="randomized", random_state=1919, iterated_power=1).fit_transform(X.astype(np.float64))
    Z = StandardScaler().fit_transform(Z)
    L = np.eye(y.max() + 1)[y]
    iu = np.triu_indices(len(y), 1)
    return float(scipy.stats.spearmanr((1 - np.corrcoef(Z))[iu], (1 - np.corrcoef(L))[iu])[0] * 100)


def b_ncti(X, y):
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis as LDA
    pca = PCA(64, random_state=42)
    Z = pca.fit_transform(X.astype(np.float64))
    temp = max(np.exp(-pca.explained_variance_[:32].sum()), 1e-10)
    clf = LDA(solver="svd") if temp == 1e-10 else LDA(solver="eigen", shrinkage=float(temp))
    low = clf.fit_transform(Z, y)
    low -= low.mean(0)
    pr = clf.predict_proba(Z)
    return float(np.linalg.norm(low, ord="nuc"))  # seli part


def b_nleep(X, y):
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture
    C = y.max() + 1
    Z = PCA(0.8).fit_transform(X.astype(np.float64))
    pr = GaussianMixture(5 * C, random_state=42).fit(Z).predict_proba(Z)
    joint = np.stack([pr[y == c].sum(0) for c in range(C)]) / len(y)
    return float((pr @ (joint / joint.sum(0)).T)[np.arange(len(y)), y].mean())


def b_lp(X, y):
    from sklearn.neighbors import KNeighborsClassifier, NeighborhoodComponentsAnalysis
    Z = NeighborhoodComponentsAnalysis(50, random_state=42).fit_transform(X, y)
    pr = KNeighborsClassifier(5).fit(Z, y).predict_proba(Z)
    return float(pr[np.arange(len(y)), y].mean())


def b_knn(X, y, k=5):
    from sklearn.neighbors import NearestNeighbors
    idx = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    votes = np.stack([(y[idx] == c).sum(1) for c in range(y.max() + 1)], 1)
    return float((votes.argmax(1) == y).mean())


def b_linear_probe(X, y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    return float(cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=50)), X, y, cv=cv).mean())


def b_sfda(X, y):
    from scipy import linalg
    X = X.astype(np.float64).copy()
    C = y.max() + 1
    N = len(y)

    def fit(X, a=None):
        pri = np.bincount(y) / N
        mu = np.stack([X[y == c].mean(0) for c in range(C)])
        Sw = sum(pri[c] * np.cov(X[y == c].T, bias=1) for c in range(C))
        if a is None:
            v = Sw.sum(1)
            for _ in range(3):
                t = Sw @ v; w = t / np.linalg.norm(t); t = Sw @ w; v = t / np.linalg.norm(t)
            a = max(np.exp(-5 * (v @ Sw @ w)), 1e-10)
        S = (1 - a) * Sw + a * np.trace(Sw) / Sw.shape[0] * np.eye(Sw.shape[0])
        coef = linalg.solve(S, mu.T, assume_a="pos").T
        logit = X @ coef.T - 0.5 * (mu * coef).sum(1) + np.log(pri)
        P = np.exp(logit - logit.max(1, keepdims=True))
        return P / P.sum(1, keepdims=True), a, mu

    P, a, mu = fit(X)
    P = np.exp(P) / np.exp(P).sum(1, keepdims=True)
    outer = (mu.sum(0) - mu) / (C - 1)
    w = P[np.arange(N), y][:, None]
    X = w * X + (1 - w) * outer[y]
    P2, _, _ = fit(X, a)
    return float(P2[np.arange(N), y].mean())


OURS = {
    "logme": lambda d: M.logme(d["X"], d["y"]),
    "leep": lambda d: M.leep(d["Z"], d["y"]),
    "nce": lambda d: M.nce(d["Z"], d["y"]),
    "sfda": lambda d: M.sfda(d["X"], d["y"]),
    "parc": lambda d: M.parc(d["X"], d["y"]),
    "ncti_parts": lambda d: M.ncti_parts(d["X"], d["y"]).seli,
    "nleep": lambda d: M.nleep(d["X"], d["y"]),
    "lp": lambda d: M.lp(d["X"], d["y"]),
    "h_score": lambda d: M.h_score(d["X"], d["y"]),
    "regularized_h_score": lambda d: M.regularized_h_score(d["X"], d["y"]),
    "gbc": lambda d: M.gbc(d["X"], d["y"]),
    "transrate": lambda d: M.transrate(d["X"], d["y"]),
    "etran_parts": lambda d: M.etran_parts(d["X"], d["y"]).lda,
    "knn_accuracy": lambda d: M.knn_accuracy(d["X"], d["y"]),
    "linear_probe": lambda d: M.linear_probe(d["X"], d["y"]),
}
BASE = {"logme": (b_logme, "X"), "leep": (b_leep, "Z"), "nce": (b_nce, "Z"), "sfda": (b_sfda, "X"),
        "parc": (b_parc, "X"), "ncti_parts": (b_ncti, "X"), "nleep": (b_nleep, "X"), "lp": (b_lp, "X"),
        "h_score": (b_h_score, "X"), "regularized_h_score": (b_reg_h_score, "X"), "gbc": (b_gbc, "X"),
        "transrate": (b_transrate, "X"), "knn_accuracy": (b_knn, "X"), "linear_probe": (b_linear_probe, "X")}
# baselines that materialise N x N (or are O(N^2) per iteration) only run up to this N
BASE_QUADRATIC = {"parc": 10_000, "lp": 2_000}


def timed(fn, *a):
    t = time.perf_counter()
    v = fn(*a)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return v, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu + cuda if present)")
    ap.add_argument("--baseline-max", type=int, default=10_000, help="skip baselines above this N")
    ap.add_argument("--metrics", nargs="+", default=list(OURS))
    ap.add_argument("--no-approx-check", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch and BLAS threads (default: torch's); 1 avoids oversubscription on a shared CPU")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")  # baseline convergence warnings
    if args.threads:
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"# helpers.metrics benchmark  D={args.dim}  C=5  host={platform.node()}")
    print(f"# CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}; torch {torch.__version__}; numpy {np.__version__}; python {sys.version.split()[0]}")
    if "cuda" in devices:
        print(f"# GPU: {torch.cuda.get_device_name(0)}")
    # warm-up (first calls pay lazy initialisation of LAPACK/torch kernels)
    X, y, Z = make_data(300, args.dim)
    for name in args.metrics:
        OURS[name]({"X": X, "y": y, "Z": Z})
    for N in args.sizes:
        X, y, Z = make_data(N, args.dim)
        print(f"\n## N = {N}")
        hdr = f"{'metric':<22}" + "".join(f"{dev + ' s':>12}" for dev in devices) + f"{'baseline s':>12}{'|ours-base|':>14}"
        print(hdr)
        totals = {dev: 0.0 for dev in devices}
        for name in args.metrics:
            row = f"{name:<22}"
            val = None
            for dev in devices:
                if dev == "cpu":
                    d = {"X": X, "y": y, "Z": Z}
                else:
                    d = {"X": torch.from_numpy(X).cuda(), "y": torch.from_numpy(y).cuda(), "Z": torch.from_numpy(Z).cuda()}
                try:
                    v, t = timed(OURS[name], d)
                    totals[dev] += t
                    row += f"{t:12.3f}"
                    val = v if val is None else val
                except Exception as exc:  # report and go on
                    row += f"{'ERR':>12}"
                    print(f"#   {name} on {dev}: {type(exc).__name__}: {exc}")
            base = BASE.get(name)
            if base and N <= min(args.baseline_max, BASE_QUADRATIC.get(name, 10**12)):
                fn, key = base
                bv, bt = timed(fn, {"X": X, "Z": Z}[key], y)
                row += f"{bt:12.3f}{abs(bv - val):14.2e}" if val is not None else f"{bt:12.3f}{'':>14}"
            else:
                row += f"{'-':>12}{'-':>14}"
            print(row, flush=True)
        print(f"{'TOTAL':<22}" + "".join(f"{totals[d]:12.3f}" for d in devices))
        if N == 10_000 and not args.no_approx_check and "cpu" in devices:
            print("\n# large-N forms vs exact at N = 10k")
            ex, t1 = timed(lambda: M.parc(X, y, max_exact=N))
            ap_, t2 = timed(lambda: M.parc(X, y))
            print(f"parc exact {ex:.4f} ({t1:.1f} s)  subsample-5000 {ap_:.4f} ({t2:.1f} s)  abs err {abs(ex - ap_):.4f}  rel err {abs(ex - ap_) / abs(ex):.2e}")
            ex, t1 = timed(lambda: M.lp(X, y, nca_max_n=N))
            ap_, t2 = timed(lambda: M.lp(X, y))
            print(f"lp   exact-NCA {ex:.4f} ({t1:.1f} s)  NCA-on-3000 {ap_:.4f} ({t2:.1f} s)  abs err {abs(ex - ap_):.4f}")
            lp_ref = ap_
            ex, t1 = timed(lambda: M.knn_accuracy(X, y))
            print(f"knn  exact {ex:.4f} ({t1:.1f} s); query-subset form (default above 10000 samples):")
            for m in (1000, 5000):
                errs, ts = [], []
                for seed in range(3):
                    ap_, t2 = timed(lambda: M.knn_accuracy(X, y, max_exact=m, subsample_seed=seed))
                    errs.append(ap_ - ex)
                    ts.append(t2)
                se = np.sqrt(ex * (1 - ex) / m * (1 - m / N))
                print(f"     {m:5d} queries: err (seeds 0-2) " + " ".join(f"{e:+.4f}" for e in errs)
                      + f"  max |err| {max(map(abs, errs)):.4f}  expected s.e. {se:.4f}  ({np.mean(ts):.1f} s each)")
            print(f"lp   5-NN step exact {lp_ref:.4f} (NCA-on-3000 as above); query-subset form, same NCA:")
            for m in (1000,):
                errs, ts = [], []
                for seed in range(3):
                    # subsample_seed also seeds the NCA subset: compare with the exact 5-NN on that same NCA
                    exs = M.lp(X, y, subsample_seed=seed)
                    ap_, t2 = timed(lambda: M.lp(X, y, max_exact=m, subsample_seed=seed))
                    errs.append(ap_ - exs)
                    ts.append(t2)
                se = np.sqrt(lp_ref * (1 - lp_ref) / m * (1 - m / N))
                print(f"     {m:5d} queries: err (seeds 0-2) " + " ".join(f"{e:+.4f}" for e in errs)
                      + f"  max |err| {max(map(abs, errs)):.4f}  (s.e. bound {se:.4f}; {np.mean(ts):.1f} s each)")
            print("linear_probe: exact at every N (full-batch L-BFGS, O(N D C) per step, no N x N)")


if __name__ == "__main__":
    main()

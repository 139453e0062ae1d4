"""Linear-algebra building blocks shared by the metrics (torch, any device).

* :func:`pca` reproduces scikit-learn's ``PCA`` (``full``, ``covariance_eigh`` and ``randomized`` solvers, the
  ``auto`` policy, sign convention of scikit-learn >= 1.5 ``svd_flip(u_based_decision=False)``, or the
  U-based convention of scikit-learn <= 1.4 with ``sign="u"``). The randomised solver draws its
  Gaussian test matrix from ``numpy.random.RandomState(random_state)`` exactly as scikit-learn does, so a
  given ``random_state`` selects the same random subspace and the reference numbers of PARC / NCTI are
  reproduced; the products, LU/QR normalisations and SVDs run in torch on the input's device.
* :func:`randomized_pca_numpy` - the same randomised PCA in NumPy/SciPy on the host, operation for operation
  as scikit-learn >= 1.8 computes it in the input's precision (float32 stays float32). Used only where a
  reference number must be reproduced to the last digits: with one power iteration the float32 subspace
  differs from the float64 one by up to ~3e-3 relative per component, and torch's float32 products round
  differently from OpenBLAS's, so only the same arithmetic gives the same PARC (see ``parc(backend=...)``).
* covariance helpers (biased empirical covariance, linear shrinkage towards ``trace/D * I``),
  the power-iteration estimate of the largest eigenvalue used by SFDA's adaptive shrinkage, Ledoit-Wolf.
* :func:`lda_fit` - the shrinkage LDA of scikit-learn's ``eigen`` solver and of SFDA, and
  :func:`lda_svd_fit` - scikit-learn's ``svd`` solver (used by NCTI when its shrinkage underflows).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# --------------------------------------------------------------------------------------------------- PCA


def _svd_flip_v(U: torch.Tensor | None, Vt: torch.Tensor):
    """scikit-learn's ``svd_flip(u_based_decision=False)``: largest |entry| of each row of Vt positive."""
    idx = torch.argmax(Vt.abs(), dim=1)
    signs = torch.sign(Vt[torch.arange(Vt.shape[0], device=Vt.device), idx])
    signs[signs == 0] = 1
    Vt = Vt * signs[:, None]
    if U is not None:
        U = U * signs[None, : U.shape[1]]
    return U, Vt


def _svd_flip_u(U: torch.Tensor, Vt: torch.Tensor):
    """scikit-learn <= 1.4's ``svd_flip(u_based_decision=True)``: largest |entry| of each column of U positive."""
    idx = torch.argmax(U.abs(), dim=0)
    signs = torch.sign(U[idx, torch.arange(U.shape[1], device=U.device)])
    signs[signs == 0] = 1
    return U * signs[None, :], Vt * signs[: Vt.shape[0], None]


def _flip(U, Vt, sign: str):
    if sign == "v":
        return _svd_flip_v(U, Vt)
    if sign == "u":
        if U is None:
            raise ValueError("sign='u' needs U (not available with the covariance_eigh solver)")
        return _svd_flip_u(U, Vt)
    raise ValueError(f"sign must be 'v' (scikit-learn >= 1.5) or 'u' (scikit-learn <= 1.4), got {sign!r}")


def _randomized_svd(M: torch.Tensor, k: int, *, n_oversamples: int, n_iter, random_state: int):
    n_random = k + n_oversamples
    n_samples, n_features = M.shape
    if n_iter == "auto":
        n_iter = 7 if k < 0.1 * min(M.shape) else 4
    transpose = n_samples < n_features
    if transpose:
        M = M.T
    rng = np.random.RandomState(random_state)
    Q = torch.from_numpy(rng.normal(size=(M.shape[1], n_random))).to(M.dtype).to(M.device)
    for _ in range(n_iter):
        if n_iter <= 2:  # sklearn: normaliser "none" for n_iter <= 2, else LU
            Q = M @ Q
            Q = M.T @ Q
        else:
            P, L, _ = torch.linalg.lu(M @ Q)
            Q = P @ L
            P, L, _ = torch.linalg.lu(M.T @ Q)
            Q = P @ L
    Q, _ = torch.linalg.qr(M @ Q, mode="reduced")
    B = Q.T @ M
    Uhat, s, Vt = torch.linalg.svd(B, full_matrices=False)
    U = Q @ Uhat
    if transpose:
        return Vt[:k, :].T, s[:k], U[:, :k].T
    return U[:, :k], s[:k], Vt[:k, :]


@dataclass
class PCAResult:
    Z: torch.Tensor  # (N, k) projected data
    components: torch.Tensor  # (k, D)
    explained_variance: torch.Tensor  # (k,)
    mean: torch.Tensor
    solver: str


def pca(X: torch.Tensor, n_components, *, solver: str = "auto", random_state: int = 0,
        iterated_power="auto", n_oversamples: int = 10, sign: str = "v") -> PCAResult:
    """PCA of ``X`` (N, D) as scikit-learn computes it, in ``X``'s dtype and on its device.

    ``n_components``: an int, or a float in (0, 1) for the fraction of variance to keep (exact solvers).
    ``solver``: ``"auto"`` (scikit-learn 1.5+ policy: ``covariance_eigh`` when N >= 10 D and D <= 1000, ``full``
    when max(N, D) <= 500 or a variance fraction is asked, ``randomized`` when k < 0.8 min(N, D)),
    ``"full"``, ``"covariance_eigh"`` or ``"randomized"``.
    ``sign``: ``"v"`` (default, scikit-learn >= 1.5: the largest |entry| of each component is positive) or
    ``"u"`` (scikit-learn <= 1.4: the largest |entry| of each column of U is positive; not for
    ``covariance_eigh``). The sign of a component changes row-wise statistics of the projection (PARC).
    """
    N, D = X.shape
    frac = isinstance(n_components, float) and 0 < n_components < 1
    if not frac:
        n_components = int(n_components)
        if not 1 <= n_components <= min(N, D):
            raise ValueError(f"PCA n_components={n_components} must be in 1..min(N, D)={min(N, D)}")
    if solver == "auto":
        if D <= 1000 and N >= 10 * D:
            solver = "covariance_eigh"
        elif max(N, D) <= 500 or frac:
            solver = "full"
        elif 1 <= n_components < 0.8 * min(N, D):
            solver = "randomized"
        else:
            solver = "full"
    mean = X.mean(dim=0)
    if solver == "randomized":
        if frac:
            raise ValueError("randomized PCA needs an integer n_components")
        Xc = X - mean
        U, S, Vt = _randomized_svd(Xc, n_components, n_oversamples=n_oversamples, n_iter=iterated_power,
                                   random_state=random_state)
        U, Vt = _flip(U, Vt, sign)
        return PCAResult(U * S, Vt, S**2 / (N - 1), mean, solver)
    if solver == "full":
        Xc = X - mean
        U, S, Vt = torch.linalg.svd(Xc, full_matrices=False)
        U, Vt = _flip(U, Vt, sign)
        ev = S**2 / (N - 1)
    elif solver == "covariance_eigh":
        C = X.T @ X - N * torch.outer(mean, mean)
        C = C / (N - 1)
        ev, V = torch.linalg.eigh(C)
        ev = ev.flip(0).clamp_min(0)
        Vt = V.flip(1).T
        U = None
        _, Vt = _flip(None, Vt, sign)
    else:
        raise ValueError(f"unknown PCA solver {solver!r}")
    if frac:
        ratio = torch.cumsum(ev / ev.sum(), 0)
        k = int(torch.searchsorted(ratio, torch.tensor([n_components], dtype=ratio.dtype, device=ratio.device),
                                   right=True)[0]) + 1
        k = min(k, ev.numel())
    else:
        k = n_components
    comps = Vt[:k]
    if U is not None:
        Z = U[:, :k] * torch.sqrt(ev[:k] * (N - 1))
    else:
        Z = (X - mean) @ comps.T
    return PCAResult(Z, comps, ev[:k], mean, solver)


def randomized_pca_numpy(X: np.ndarray, n_components: int, *, random_state: int, iterated_power: int,
                         n_oversamples: int = 10, sign: str = "v") -> np.ndarray:
    """Randomised PCA projection ``U * S`` in NumPy/SciPy, in ``X``'s float dtype, on the host.

    The arithmetic of scikit-learn >= 1.8's ``PCA(svd_solver="randomized").fit_transform`` step by step (mean
    in the input dtype, in-place centring, float64 Gaussian test matrix from ``RandomState(random_state)`` cast
    to the input dtype, power iterations without normaliser when ``iterated_power`` <= 2 and LU otherwise,
    economic QR, SVD by LAPACK ``gesdd``, transposed problem when N < D, sign ``"v"`` or ``"u"`` as in
    :func:`pca`), so that on the same NumPy/SciPy builds the projection is the same to the last bits.
    """
    import scipy.linalg

    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    N, D = X.shape
    k = int(n_components)
    Xc = X.copy()
    Xc -= np.mean(X, axis=0)
    M = Xc.T if N < D else Xc
    Q = np.random.RandomState(random_state).normal(size=(M.shape[1], k + n_oversamples)).astype(X.dtype,
                                                                                                  copy=False)
    for _ in range(iterated_power):
        if iterated_power <= 2:
            Q = M @ Q
            Q = M.T @ Q
        else:
            Q = scipy.linalg.lu(M @ Q, permute_l=True, check_finite=False)[0]
            Q = scipy.linalg.lu(M.T @ Q, permute_l=True, check_finite=False)[0]
    Q = scipy.linalg.qr(M @ Q, mode="economic", check_finite=False)[0]
    Uhat, s, Vt = scipy.linalg.svd(Q.T @ M, full_matrices=False, lapack_driver="gesdd")
    U = Q @ Uhat
    if N < D:
        U, s, Vt = Vt[:k].T, s[:k], U[:, :k].T
    else:
        U, s, Vt = U[:, :k], s[:k], Vt[:k]
    if sign == "v":
        signs = np.sign(Vt[np.arange(k), np.argmax(np.abs(Vt), axis=1)])
    elif sign == "u":
        signs = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(k)])
    else:
        raise ValueError(f"sign must be 'v' or 'u', got {sign!r}")
    signs[signs == 0] = 1
    U = U * signs.astype(U.dtype)
    U *= s
    return U


# --------------------------------------------------------------------------------------------- covariance


def emp_cov(X: torch.Tensor) -> torch.Tensor:
    """Biased (1/N) empirical covariance of the rows of X."""
    Xc = X - X.mean(dim=0)
    return Xc.T @ Xc / X.shape[0]


def shrink(S: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """(1 - a) S + a * trace(S)/D * I (scikit-learn's ``shrunk_covariance``)."""
    D = S.shape[0]
    mu = torch.trace(S) / D
    out = (1.0 - shrinkage) * S
    out.diagonal().add_(shrinkage * mu)
    return out


def within_cov(X: torch.Tensor, y: torch.Tensor, C: int, priors: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """sum_k prior_k * biased covariance of class k (the pooled within-class scatter of SFDA / sklearn)."""
    Xc = X - means[y]
    counts = torch.bincount(y, minlength=C).to(X.dtype)
    w = (priors / counts)[y]
    return (Xc * w[:, None]).T @ Xc


def power_top_eig(A: torch.Tensor, iterations: int = 3) -> float:
    """SFDA's ``iterative_A``: 3 power iterations started from the row sums, Rayleigh-like estimate."""
    x = A.sum(dim=1)
    y = x
    for _ in range(iterations):
        t = A @ x
        y = t / torch.linalg.vector_norm(t)
        t = A @ y
        x = t / torch.linalg.vector_norm(t)
    return float(x @ A @ y)


def ledoit_wolf(X: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit-Wolf shrunk covariance (as scikit-learn's ``LedoitWolf(assume_centered=False)``)."""
    N, D = X.shape
    Xc = X - X.mean(dim=0)
    S = Xc.T @ Xc / N
    mu = torch.trace(S) / D
    X2 = Xc**2
    beta_ = float(((X2.T @ X2) / N - S**2).sum()) / N  # sum of var of the entries' estimates
    delta_ = float(((S - mu * torch.eye(D, dtype=X.dtype, device=X.device)) ** 2).sum())
    beta_ = min(beta_, delta_)
    shrinkage = 0.0 if delta_ == 0 else beta_ / delta_
    return shrink(S, shrinkage), shrinkage


def safe_solve_psd(A: torch.Tensor, B: torch.Tensor, what: str) -> torch.Tensor:
    """Solve A X = B for symmetric positive (semi-)definite A; a clear ValueError instead of LinAlgError."""
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return torch.cholesky_solve(B, L)
    try:
        return torch.linalg.lstsq(A, B).solution if A.device.type == "cpu" else torch.linalg.pinv(A) @ B
    except RuntimeError as exc:  # pragma: no cover
        raise ValueError(f"{what}: singular matrix ({exc})") from exc


def gen_eigh(A: torch.Tensor, B: torch.Tensor, what: str = "generalised eigenproblem"):
    """Solve A v = w B v (B positive definite) like ``scipy.linalg.eigh(A, B)``: V^T B V = I, ascending w."""
    L, info = torch.linalg.cholesky_ex(B)
    if int(info) != 0:
        raise ValueError(f"{what}: the within-class scatter is not positive definite (degenerate features)")
    Linv_A = torch.linalg.solve_triangular(L, A, upper=False)
    M = torch.linalg.solve_triangular(L, Linv_A.T, upper=False).T
    M = (M + M.T) / 2
    w, W = torch.linalg.eigh(M)
    V = torch.linalg.solve_triangular(L.T, W, upper=True)
    return w, V


# -------------------------------------------------------------------------------------------------- LDA


@dataclass
class LDAModel:
    coef: torch.Tensor  # (C, D)
    intercept: torch.Tensor  # (C,)
    scalings: torch.Tensor | None  # (D, k) projection of transform()
    xbar: torch.Tensor | None  # centring of transform() (svd solver), None for eigen

    def decision(self, X):
        return X @ self.coef.T + self.intercept

    def predict_proba(self, X):
        return torch.softmax(self.decision(X), dim=1)

    def transform(self, X, k: int):
        Z = X @ self.scalings if self.xbar is None else (X - self.xbar) @ self.scalings
        return Z[:, :k]


def lda_fit(X, y, C, shrinkage: float, *, with_scalings: bool = False) -> LDAModel:
    """Shrinkage LDA (scikit-learn ``solver='eigen'`` with a fixed shrinkage; SFDA's LDA).

    Sw = sum_k prior_k cov_k shrunk by ``shrinkage``; coef = means Sw^-1; intercept = -1/2 diag(means coef^T)
    + log prior. With ``with_scalings`` the discriminant directions (generalised eigenvectors of the between
    scatter St_shrunk - Sw against Sw, descending) are returned for ``transform``.
    """
    N = X.shape[0]
    counts = torch.bincount(y, minlength=C).to(X.dtype)
    priors = counts / N
    means = torch.zeros(C, X.shape[1], dtype=X.dtype, device=X.device).index_add_(0, y, X) / counts[:, None]
    Sw = shrink(within_cov(X, y, C, priors, means), shrinkage)
    scalings = None
    if with_scalings:
        St = shrink(emp_cov(X), shrinkage)
        w, V = gen_eigh(St - Sw, Sw, "LDA")
        order = torch.argsort(w, descending=True)
        scalings = V[:, order]
        coef = (means @ scalings) @ scalings.T
    else:
        coef = safe_solve_psd(Sw, means.T, "LDA").T
    intercept = -0.5 * (means * coef).sum(dim=1) + torch.log(priors)
    return LDAModel(coef, intercept, scalings, None)


def lda_svd_fit(X, y, C, tol: float = 1e-4) -> LDAModel:
    """scikit-learn's ``LinearDiscriminantAnalysis(solver='svd')`` (no shrinkage), in torch."""
    N = X.shape[0]
    counts = torch.bincount(y, minlength=C).to(X.dtype)
    priors = counts / N
    means = torch.zeros(C, X.shape[1], dtype=X.dtype, device=X.device).index_add_(0, y, X) / counts[:, None]
    Xc = X - means[y]
    xbar = priors @ means
    std = Xc.std(dim=0, unbiased=False)
    std = torch.where(std == 0, torch.ones_like(std), std)
    Xs = np.sqrt(1.0 / N) * (Xc / std)  # scikit-learn >= 1.6 uses 1/N (older: 1/(N - C))
    _, S, Vt = torch.linalg.svd(Xs, full_matrices=False)
    rank = int((S > tol).sum())
    scalings = (Vt[:rank, :] / std).T / S[:rank]
    fac = 1.0 / (C - 1)
    Xb = (torch.sqrt(N * priors * fac) * (means - xbar).T).T @ scalings
    _, S2, Vt2 = torch.linalg.svd(Xb, full_matrices=False)
    rank2 = int((S2 > tol * S2[0]).sum())
    scal = scalings @ Vt2.T[:, :rank2]
    coef = (means - xbar) @ scal
    intercept = -0.5 * (coef**2).sum(dim=1) + torch.log(priors)
    coef = coef @ scal.T
    intercept = intercept - xbar @ coef.T
    return LDAModel(coef, intercept, scal, xbar)

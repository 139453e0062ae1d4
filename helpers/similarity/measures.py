"""The measures of two activation matrices: CCA and its coefficients, SVCCA, PWCCA, linear CKA and its
minibatch form, with the input checks they share. Conventions and semantics: :mod:`helpers.similarity`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from helpers.metrics._common import to_tensor


# ----------------------------------------------------------------------------------------------------------
# input checking


def _matrix(a, name: str) -> torch.Tensor:
    t = to_tensor(a, name)
    if t.is_complex():
        raise ValueError(f"{name}: complex input is not supported (dtype {t.dtype})")
    if t.ndim != 2:
        hint = f"; for a single neuron use {name}[:, None]" if t.ndim == 1 else ""
        raise ValueError(f"{name} must be a 2-D (points, neurons) array, got shape {tuple(t.shape)}{hint}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)} (need at least one point and one neuron)")
    return t


def _finite64(t: torch.Tensor, name: str) -> torch.Tensor:
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(dim=1).sum())
        raise ValueError(f"{name} contains NaN or Inf values ({bad} of {t.shape[0]} points affected)")
    return t


def _pair(x, y, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both inputs as float64 tensors on one device (a tensor's; a NumPy partner follows it), checked."""
    tx, ty = _matrix(x, "x"), _matrix(y, "y")
    x_is_t, y_is_t = isinstance(x, torch.Tensor), isinstance(y, torch.Tensor)
    if x_is_t and y_is_t and tx.device != ty.device:
        raise ValueError(f"{what}: x is on {tx.device} and y on {ty.device}; put both on one device")
    device = tx.device if x_is_t else ty.device
    tx, ty = tx.to(device), ty.to(device)
    if tx.shape[0] != ty.shape[0]:
        raise ValueError(f"{what}: x and y must hold the same points, got {tx.shape[0]} and {ty.shape[0]} points")
    return _finite64(tx, "x"), _finite64(ty, "y")


def _need_more_points(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    n = x.shape[0]
    for name, t in (("x", x), ("y", y)):
        if n <= t.shape[1]:
            raise ValueError(
                f"{what} needs more points than neurons: {name} has {n} points and {t.shape[1]} neurons "
                f"(with n <= d every canonical correlation is 1 whatever the data); use more points or fewer "
                f"neurons (e.g. a random subset of channels, as [R] took 64)")


# ----------------------------------------------------------------------------------------------------------
# CCA family


@dataclass
class _CCA:
    coefficients: torch.Tensor  # (min(kx, ky),) descending
    u: torch.Tensor             # (kx, kx) left singular vectors of Sxx^-1/2 Sxy Syy^-1/2
    vh: torch.Tensor            # (ky, ky) right singular vectors (rows)
    keep_x: torch.Tensor        # (dx,) bool: neurons kept
    keep_y: torch.Tensor


def _inv_sqrt_psd(a: torch.Tensor) -> torch.Tensor:
    """(pinv(a))^(1/2) of a symmetric PSD matrix by one eigendecomposition (eigenvalues below 1e-15 x the largest
    are treated as zero, the rule of ``numpy.linalg.pinv``)."""
    w, v = torch.linalg.eigh(a)
    cutoff = 1e-15 * w.abs().max()
    inv_sqrt = torch.where(w > cutoff, w.clamp_min(cutoff).rsqrt(), torch.zeros_like(w))
    return (v * inv_sqrt) @ v.T


def _cca_core(x: torch.Tensor, y: torch.Tensor, epsilon: float, what: str, compute_vectors: bool) -> _CCA:
    if not (epsilon >= 0 and math.isfinite(epsilon)):
        raise ValueError(f"{what}: epsilon must be a finite number >= 0, got {epsilon}")
    _need_more_points(x, y, what)
    n = x.shape[0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1), xc.T @ yc / (n - 1)
    # rescale each block by its largest entry (google/svcca: "to make the cca computation more stable")
    xmax, ymax = sxx.abs().max(), syy.abs().max()
    for name, m in (("x", xmax), ("y", ymax)):
        if float(m) == 0.0:
            raise ValueError(f"{what}: every neuron of {name} is constant (zero variance); CCA is undefined")
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / torch.sqrt(xmax * ymax)
    keep_x, keep_y = sxx.diagonal() >= epsilon, syy.diagonal() >= epsilon
    if not bool(keep_x.any()) or not bool(keep_y.any()):
        side = "x" if not bool(keep_x.any()) else "y"
        raise ValueError(f"{what}: no neuron of {side} has a rescaled variance >= epsilon={epsilon}")
    sxx, syy, sxy = sxx[keep_x][:, keep_x], syy[keep_y][:, keep_y], sxy[keep_x][:, keep_y]
    eye = lambda k: torch.eye(k, dtype=sxx.dtype, device=sxx.device)  # noqa: E731
    ixx = _inv_sqrt_psd(sxx + epsilon * eye(sxx.shape[0]))
    iyy = _inv_sqrt_psd(syy + epsilon * eye(syy.shape[0]))
    arr = ixx @ sxy @ iyy
    if compute_vectors:
        u, s, vh = torch.linalg.svd(arr, full_matrices=True)
    else:
        u = vh = torch.empty(0, dtype=arr.dtype, device=arr.device)
        s = torch.linalg.svdvals(arr)
    return _CCA(s.abs(), u, vh, keep_x, keep_y)


def cca_coefficients(x, y, epsilon: float = 1e-12) -> np.ndarray:
    """Canonical correlations of ``x`` (points, dx) and ``y`` (points, dy), descending, as a float64 NumPy array
    of length min(kept_x, kept_y) (kept = neurons not dropped as constant, see the module docstring).

    Semantics of google/svcca ``cca_core.get_cca_similarity(x.T, y.T, epsilon=epsilon)["cca_coef1"]``
    (Raghu et al. 2017): covariance blocks rescaled by their largest entry, neurons with rescaled variance below
    ``epsilon`` dropped, ``epsilon * I`` added, singular values of ``Sxx^-1/2 Sxy Syy^-1/2``. Each lies in
    [0, 1] up to rounding (the ridge makes them slightly smaller than the exact values).
    """
    x, y = _pair(x, y, "cca")
    return _cca_core(x, y, epsilon, "cca", compute_vectors=False).coefficients.cpu().numpy()


def cca(x, y, epsilon: float = 1e-12) -> float:
    """Mean of all canonical correlations of ``x`` (points, dx) and ``y`` (points, dy), in [0, 1], higher = more
    similar: [R]'s "CCA similarity" (their summary "SVCCA" is this; there is no SVD step).

    Invariant to any invertible linear map of either side (so it cannot tell a network from a random linear
    mixture of its neurons), and inflated when points are few: for independent Gaussian data with d neurons per
    side the mean squared canonical correlation is d / (n - 1), so the mean itself is of order sqrt(d / n)
    (about 0.08 for [R]'s 64 channels and 10 000 points). See :func:`cca_coefficients` for the arithmetic and the module
    docstring for inputs, constant neurons and the ``points > neurons`` requirement.
    """
    x, y = _pair(x, y, "cca")
    return float(_cca_core(x, y, epsilon, "cca", compute_vectors=False).coefficients.mean())


def svd_reduce(x, keep: float = 0.99) -> torch.Tensor:
    """The SVCCA reduction of one side: ``x`` centred per neuron and projected on its fewest principal directions
    that explain at least ``keep`` of its variance (squared singular values), each scaled by its singular value
    (``U[:, :k] * s[:k]``). Returns a float64 tensor (points, k) on ``x``'s device; ``k`` is its width.

    Computed from the eigendecomposition of ``x'x`` when points > neurons (cheaper; the kept high-variance
    directions are as accurate as with an SVD), else from the SVD of ``x``.
    """
    if not (0.0 < keep <= 1.0):
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    t = _finite64(_matrix(x, "x"), "x")
    xc = t - t.mean(0)
    if t.shape[0] > t.shape[1]:
        w, v = torch.linalg.eigh(xc.T @ xc)
        w, v = w.flip(0).clamp_min(0), v.flip(1)
        var = w
        basis = lambda k: xc @ v[:, :k]  # noqa: E731  (x V = U S)
    else:
        u, s, _ = torch.linalg.svd(xc, full_matrices=False)
        var = s**2
        basis = lambda k: u[:, :k] * s[:k]  # noqa: E731
    total = var.sum()
    if float(total) == 0.0:
        raise ValueError("svd_reduce: every neuron is constant (zero variance)")
    explained = torch.cumsum(var, 0) / total
    k = min(int((explained < keep).sum()) + 1, var.numel())
    return basis(k)


def svcca(x, y, keep: float = 0.99, epsilon: float = 1e-12) -> float:
    """SVCCA (Raghu et al. 2017): :func:`svd_reduce` each side to ``keep`` of its variance, then :func:`cca` of the
    reduced sets (mean of all canonical correlations). In [0, 1], higher = more similar.

    Raises when either side has ``points <= neurons`` before the reduction (see the module docstring), even
    though the reduced sets would pass: a CCA on that few points means nothing.
    """
    x, y = _pair(x, y, "svcca")
    _need_more_points(x, y, "svcca")
    rx, ry = svd_reduce(x, keep), svd_reduce(y, keep)
    return float(_cca_core(rx, ry, epsilon, "svcca", compute_vectors=False).coefficients.mean())


def pwcca(x, y, epsilon: float = 1e-12) -> float:
    """Projection-weighted CCA (Morcos et al. 2018) with google/svcca ``pwcca.compute_pwcca(x.T, y.T, epsilon)[0]``
    arithmetic: the canonical correlations of :func:`cca_coefficients`, weighted by how much of the side with
    fewer kept neurons' raw activations each direction accounts for. In [0, 1], higher = more similar.

    Reference arithmetic, kept on purpose so the values match: the "directions" are the centred activations
    rotated by the CCA singular vectors (not whitened), plus the neuron means; they are orthonormalised by QR
    and the weight of direction i is sum_j |<q_i, a_j>| over the (uncentred) neurons a_j. One difference: when
    ``y`` keeps fewer neurons than ``x``, google/svcca projects ``x``'s activations through ``y``'s directions
    (it indexes ``acts1`` in that branch, a bug); here ``y``'s own activations are used. With equal neuron
    counts (the usual case, and [R]'s) the branch is the ``x`` one and the values agree.
    """
    x, y = _pair(x, y, "pwcca")
    res = _cca_core(x, y, epsilon, "pwcca", compute_vectors=True)
    if int(res.keep_x.sum()) <= int(res.keep_y.sum()):
        acts, rot = x[:, res.keep_x], res.u
    else:
        acts, rot = y[:, res.keep_y], res.vh.T
    means = acts.mean(0)
    directions = (acts - means) @ rot + means  # (points, k), columns ordered as the coefficients
    q, _ = torch.linalg.qr(directions, mode="reduced")
    weights = (q.T @ acts).abs().sum(1)
    weights = weights / weights.sum()
    return float((weights[: res.coefficients.numel()] * res.coefficients).sum())


# ----------------------------------------------------------------------------------------------------------
# CKA


def _debias(xty, rows_xy, sum_rx, sum_ry, n: int):
    """Unbiased HSIC (Song et al. 2007) up to a positive factor, in Kornblith et al.'s feature-space form:
    ``xty - n/(n-2) * <r_x, r_y> + sum(r_x) sum(r_y) / ((n-1)(n-2))`` with r = squared norms of centred rows."""
    return xty - n / (n - 2.0) * rows_xy + sum_rx * sum_ry / ((n - 1.0) * (n - 2.0))


def _cka_ratio(hxy, hxx, hyy, debiased: bool, what: str) -> float:
    hxy, hxx, hyy = float(hxy), float(hxx), float(hyy)
    for name, h in (("x", hxx), ("y", hyy)):
        if h <= 0.0:
            if not debiased:
                raise ValueError(f"{what}: every neuron of {name} is constant (zero variance); CKA is undefined")
            raise ValueError(
                f"{what}: the debiased HSIC of {name} with itself is {h:.3g} <= 0 (too few points for the "
                f"unbiased estimator, or constant neurons); use debiased=False or more points")
    return hxy / math.sqrt(hxx * hyy)


def linear_cka(x, y, debiased: bool = False) -> float:
    """Linear CKA (Kornblith et al. 2019) of ``x`` (points, dx) and ``y`` (points, dy), in feature space:
    ``||Yc'Xc||_F^2 / (||Xc'Xc||_F ||Yc'Yc||_F)`` with column-centred Xc, Yc. Higher = more similar; 1 for
    identical inputs; invariant to orthogonal maps and isotropic scaling of either side, *not* to general
    invertible maps (unlike CCA).

    ``debiased=True`` replaces each HSIC by the unbiased estimator of Song et al. 2007 (Kornblith's
    ``debiased=True``): the biased CKA of two independent data sets is inflated at small n (about
    sqrt(dx dy) / n for isotropic Gaussians with n >> d), the debiased one is near 0. It can be slightly
    negative and needs at least 4 points. Memory O(d^2), no (points x points) matrix; for data that does not
    fit in memory use :class:`MinibatchCKA`.
    """
    x, y = _pair(x, y, "linear_cka")
    n = x.shape[0]
    if n < (4 if debiased else 2):
        raise ValueError(f"linear_cka needs at least {4 if debiased else 2} points"
                         f"{' for debiased=True' if debiased else ''}, got {n}")
    xc, yc = x - x.mean(0), y - y.mean(0)
    hxy = (xc.T @ yc).square().sum()
    hxx = (xc.T @ xc).square().sum()
    hyy = (yc.T @ yc).square().sum()
    if debiased:
        rx, ry = xc.square().sum(1), yc.square().sum(1)
        hxy = _debias(hxy, rx @ ry, rx.sum(), ry.sum(), n)
        hxx = _debias(hxx, rx @ rx, rx.sum(), rx.sum(), n)
        hyy = _debias(hyy, ry @ ry, ry.sum(), ry.sum(), n)
    return _cka_ratio(hxy, hxx, hyy, debiased, "linear_cka")


class MinibatchCKA:
    """Linear CKA accumulated over batches of points, exactly equal (up to rounding) to :func:`linear_cka` on
    all points at once, with memory O(d^2) whatever the number of points (no points x points matrix).

    Each :meth:`update` adds a batch's feature-space sufficient statistics in float64 on the batch's device
    (the first batch's): the point count, column sums, ``X'X``, ``Y'Y``, ``X'Y`` and, for the debiased
    estimator, the sums of the squared row norms ``a_i = |x_i|^2``, ``b_i = |y_i|^2``, of ``a^2``, ``b^2``,
    ``ab`` and of ``a_i x_i``, ``b_i x_i``, ``a_i y_i``, ``b_i y_i``. :meth:`value` centres them with the
    global means (the squared norms of the centred rows expand in these sums), so every batch is centred
    with the mean of *all* points, not its own; batches may have any size. To limit cancellation each batch
    is first shifted by the first batch's column means (CKA does not change under a shift).

    >>> acc = MinibatchCKA()
    >>> for xb, yb in batches:            # (B, dx), (B, dy): the same B points in both networks
    ...     acc.update(xb, yb)
    >>> acc.value(), acc.value(debiased=True)
    """

    def __init__(self, debiased: bool = False):
        self.debiased = bool(debiased)
        self.n = 0
        self._shift = None

    def update(self, x_batch, y_batch) -> "MinibatchCKA":
        """Add a batch: ``x_batch`` (B, dx) and ``y_batch`` (B, dy), the same B points. Returns ``self``."""
        x, y = _pair(x_batch, y_batch, "MinibatchCKA.update")
        if self._shift is None:
            self._shift = (x.mean(0), y.mean(0))
            dx, dy = x.shape[1], y.shape[1]
            z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=x.device)  # noqa: E731
            self.sx, self.sy, self.xx, self.yy, self.xy = z(dx), z(dy), z(dx, dx), z(dy, dy), z(dx, dy)
            self.sa, self.sb, self.saa, self.sbb, self.sab = z(()), z(()), z(()), z(()), z(())
            self.ax, self.bx, self.ay, self.by = z(dx), z(dx), z(dy), z(dy)
        device = self.sx.device
        x, y = x.to(device), y.to(device)
        if x.shape[1] != self.sx.numel() or y.shape[1] != self.sy.numel():
            raise ValueError(f"MinibatchCKA.update: batch widths ({x.shape[1]}, {y.shape[1]}) differ from the first "
                             f"batch's ({self.sx.numel()}, {self.sy.numel()})")
        x, y = x - self._shift[0], y - self._shift[1]
        a, b = x.square().sum(1), y.square().sum(1)
        self.n += x.shape[0]
        self.sx += x.sum(0)
        self.sy += y.sum(0)
        self.xx += x.T @ x
        self.yy += y.T @ y
        self.xy += x.T @ y
        self.sa += a.sum()
        self.sb += b.sum()
        self.saa += a @ a
        self.sbb += b @ b
        self.sab += a @ b
        self.ax += a @ x
        self.bx += b @ x
        self.ay += a @ y
        self.by += b @ y
        return self

    @staticmethod
    def _rows_dot(n, s_ab, a_y, b_x, s_a, s_b, s_xy, sx, sy, mx, my):
        """sum_i r_x,i r_y,i for r = squared norms of the rows centred by the global means mx, my, expanded in the
        uncentred sums: r_x,i = a_i - 2 x_i.mx + |mx|^2 (and the same for y)."""
        mx2, my2 = mx @ mx, my @ my
        return (s_ab - 2 * (my @ a_y) + my2 * s_a - 2 * (mx @ b_x) + 4 * (mx @ s_xy @ my)
                - 2 * my2 * (mx @ sx) + mx2 * s_b - 2 * mx2 * (my @ sy) + n * mx2 * my2)

    def value(self, debiased: bool | None = None) -> float:
        """Linear CKA of all points added so far (``debiased`` defaults to the constructor's choice)."""
        debiased = self.debiased if debiased is None else bool(debiased)
        n = self.n
        if n < (4 if debiased else 2):
            raise ValueError(f"MinibatchCKA has {n} points; needs at least {4 if debiased else 2}")
        mx, my = self.sx / n, self.sy / n
        cxx = self.xx - n * torch.outer(mx, mx)
        cyy = self.yy - n * torch.outer(my, my)
        cxy = self.xy - n * torch.outer(mx, my)
        hxy, hxx, hyy = cxy.square().sum(), cxx.square().sum(), cyy.square().sum()
        if debiased:
            rx_sum, ry_sum = cxx.trace(), cyy.trace()
            rxy = self._rows_dot(n, self.sab, self.ay, self.bx, self.sa, self.sb, self.xy, self.sx, self.sy, mx, my)
            rxx = self._rows_dot(n, self.saa, self.ax, self.ax, self.sa, self.sa, self.xx, self.sx, self.sx, mx, mx)
            ryy = self._rows_dot(n, self.sbb, self.by, self.by, self.sb, self.sb, self.yy, self.sy, self.sy, my, my)
            hxy = _debias(hxy, rxy, rx_sum, ry_sum, n)
            hxx = _debias(hxx, rxx, rx_sum, rx_sum, n)
            hyy = _debias(hyy, ryy, ry_sum, ry_sum, n)
        return _cka_ratio(hxy, hxx, hyy, debiased, "MinibatchCKA")


def linear_cka_minibatch(batches: Iterable, debiased: bool = False) -> float:
    """Linear CKA over an iterable of ``(x_batch, y_batch)`` pairs (see :class:`MinibatchCKA`)."""
    acc = MinibatchCKA(debiased)
    for xb, yb in batches:
        acc.update(xb, yb)
    if acc.n == 0:
        raise ValueError("linear_cka_minibatch: no batches given")
    return acc.value()


#: measures by name, for :func:`compare_models` (each takes x, y and returns a float)
MEASURES = {
    "cca": cca,
    "svcca": svcca,
    "pwcca": pwcca,
    "linear_cka": linear_cka,
    "linear_cka_debiased": lambda x, y: linear_cka(x, y, debiased=True),
}

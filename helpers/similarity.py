"""Similarity of hidden representations ([R], PROTOCOL.md section 8): CCA, SVCCA, PWCCA, linear CKA, the
sampling of layer activations as [R] did it, prediction similarity and (this project's extension) weight change.

Measures of two activation matrices
-----------------------------------
Every measure takes ``x`` of shape (points, neurons_x) and ``y`` of shape (points, neurons_y): the same points
(images, or spatial positions of images) in two networks. NumPy arrays and torch tensors are both accepted;
the computation runs in float64 on the inputs' device (CUDA when a tensor is on CUDA; a NumPy partner is moved
there) and the result is a Python float. All are 1 for identical inputs and lie in [0, 1] (higher = more
similar).

====================================  ============================================================  ==================
function                              what                                                          invariant to
====================================  ============================================================  ==================
``cca(x, y, epsilon=1e-12)``          mean canonical correlation, google/svcca ``cca_core``         invertible linear
``cca_coefficients(x, y, ...)``       the canonical correlations themselves (descending)
``svcca(x, y, keep=0.99)``            SVD to 99 % of the variance per side, then ``cca``             invertible linear
``pwcca(x, y, epsilon=1e-12)``        projection-weighted CCA (google/svcca ``pwcca``)
``linear_cka(x, y, debiased=False)``  linear CKA (Kornblith et al. 2019); debiased HSIC (Song 2007)  orthogonal, scale
``MinibatchCKA`` / ``linear_cka_minibatch``  the same CKA from sufficient statistics over batches
====================================  ============================================================  ==================

Conventions shared by all of them (bad input is a ``ValueError`` that names the problem):

* 2-D inputs only (a single neuron is ``x[:, None]``), the same number of points on both sides, no NaN or
  Inf, at least one point and one neuron.
* float16 / bfloat16 (and integer or bool) inputs are up-cast to float64 before anything else: the result is
  finite, and as precise as the inputs (three significant digits for float16).
* CCA, SVCCA and PWCCA need more points than neurons on each side (``points > neurons``, as google/svcca
  asserts): with n <= d points the canonical correlations are 1 whatever the data, so a value there would mean
  nothing. Between d and about 10 d points CCA is strongly inflated (for independent Gaussian data the mean
  *squared* canonical correlation is d / (n - 1), Pillai's trace under independence, so the mean correlation
  is of order sqrt(d / n)); report n and d with every value.
* A constant neuron: CCA (and SVCCA, PWCCA) drops neurons whose variance, relative to the largest entry of
  their side's covariance, is below ``epsilon`` (google/svcca's rule), so the number of canonical correlations
  is min(kept_x, kept_y); :func:`cca_coefficients` shows how many. CKA needs nothing special: a constant
  neuron is zero after centring and contributes nothing. If every neuron of a side is constant, every
  measure raises.

CCA semantics (google/svcca ``cca_core.get_cca_similarity(x.T, y.T, epsilon)``): covariances with ``n - 1``,
each block divided by the largest absolute entry of its own covariance (the cross block by the geometric mean
of the two), neurons with a rescaled variance below ``epsilon`` dropped, ``epsilon * I`` added, inverse square
roots, canonical correlations = singular values of ``Sxx^-1/2 Sxy Syy^-1/2``. The summary is the mean of *all*
of them (what [R] reported; not the ``threshold=0.98`` truncated ``mean`` of the dictionary). The inverse
square root uses one symmetric eigendecomposition with the pseudo-inverse rule (eigenvalues below 1e-15 times
the largest count as zero); google/svcca takes ``pinv`` and then a square root, which is the same matrix
except where rounding makes an eigenvalue negative, where it returns NaN and this code treats the direction
as empty.

Sampling as [R] did it
----------------------
:func:`layer_activations` registers forward hooks on named modules (for torchvision ResNets
:data:`RESNET_LAYERS`: the stem ``relu`` and the four residual stages) and returns, per (layer, repeat), the
activations of ``round(points / (h * w))`` images at every spatial position (one point per position) for
``n_channels`` random channels. :func:`sampling_plan` draws the images and channels from a seed and the layer
shapes only, so two networks of the same architecture get the same draws; :func:`compare_models` runs both
and returns a tidy table.

Predictions and weights
-----------------------
:func:`prediction_similarity`: error agreement of two classifiers with the correct independent-errors baseline,
[R]'s defective baseline and Cohen's kappa. :func:`weight_change` / :func:`weight_change_by_stage`: relative
L2 change and cosine between pre-trained and fine-tuned conv/linear weights, this project's extension ([R] has
no weight-space measure).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn

from helpers.metrics._common import to_tensor

__all__ = [
    "cca", "cca_coefficients", "svcca", "svd_reduce", "pwcca", "linear_cka", "MinibatchCKA",
    "linear_cka_minibatch", "MEASURES", "RESNET_LAYERS", "R_STAGE_OF_LAYER", "LayerSample", "layer_shapes",
    "sampling_plan", "layer_activations", "compare_models", "prediction_similarity", "weight_change",
    "weight_change_by_stage",
]

#: the five places [R] compares a ResNet, as torchvision module names (stem ReLU, then the residual stages)
RESNET_LAYERS = ("relu", "layer1", "layer2", "layer3", "layer4")
#: torchvision layer name -> the column name of [R]'s tables (Keras conv1_relu, conv2_block3_out, ...)
R_STAGE_OF_LAYER = {"relu": "conv1", "layer1": "block1", "layer2": "block2", "layer3": "block3",
                    "layer4": "block4"}


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


# ----------------------------------------------------------------------------------------------------------
# sampling layer activations as [R] did


@dataclass(frozen=True)
class LayerSample:
    """One draw of [R]'s sampling: which images and channels of one layer, for one repeat.

    ``images`` (sorted indices into the image set) and ``channels`` (indices into the layer's channels) are what
    makes two networks comparable: pass the same samples to both. ``n_images_wanted`` is
    ``max(1, round(points / (h * w)))``; fewer are used when the set is smaller (then every repeat uses all the
    images and only the channels change).
    """

    layer: str
    repeat: int
    images: tuple[int, ...]
    channels: tuple[int, ...]
    height: int
    width: int
    n_images_wanted: int

    @property
    def n_points(self) -> int:
        return len(self.images) * self.height * self.width

    @property
    def n_channels(self) -> int:
        return len(self.channels)


def _images_batch(images, index: torch.Tensor) -> torch.Tensor:
    """Model inputs for ``index``: a :class:`helpers.data.TensorImageDataset` (evaluation transform) or a float
    tensor / array (N, C, H, W) already prepared."""
    if hasattr(images, "batch") and hasattr(images, "device"):
        return images.batch(index.to(images.device))[0]
    return images.index_select(0, index.to(images.device))


def _image_source(images):
    if hasattr(images, "batch") and hasattr(images, "device"):
        return images, len(images), images.device
    t = to_tensor(images, "images")
    if t.ndim != 4:
        raise ValueError(f"images must be a TensorImageDataset or a (N, C, H, W) array, got shape {tuple(t.shape)}")
    if len(t) == 0:
        raise ValueError("images: the image set is empty")
    if not t.is_floating_point():
        raise ValueError(f"images must be prepared float model inputs (normalised), got {t.dtype}; "
                         "wrap raw uint8 images in helpers.data.TensorImageDataset")
    return t, len(t), t.device


def _modules(model: nn.Module, layers) -> dict[str, nn.Module]:
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if not layers:
        raise ValueError("no layers given")
    named = dict(model.named_modules())
    missing = [l for l in layers if l not in named or l == ""]
    if missing:
        top = [n for n in named if n and "." not in n]
        raise ValueError(f"model has no module named {missing}; top-level modules: {top}")
    return {l: named[l] for l in layers}


def _as_map(out, layer: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"layer {layer!r} returns {type(out).__name__}, not a tensor; pick a module that returns one")
    if out.ndim == 2:
        return out[:, :, None, None]
    if out.ndim != 4:
        raise ValueError(f"layer {layer!r} returns shape {tuple(out.shape)}; expected (B, C, H, W) or (B, C)")
    return out


class _Hooks:
    """Forward hooks on named modules that hand each output to ``sink(layer, output)``; removed on exit. A module
    that runs more than once per forward pass (a shared ReLU inside a block) is an error: its output is ambiguous."""

    def __init__(self, modules: Mapping[str, nn.Module], sink):
        self.modules, self.sink, self.handles, self.calls = modules, sink, [], {}

    def __enter__(self):
        for name, mod in self.modules.items():
            self.handles.append(mod.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name):
        def fn(module, inputs, output):
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] > 1:
                raise ValueError(f"module {name!r} runs {self.calls[name]} times in one forward pass; its output is "
                                 "ambiguous: hook a module that runs once (e.g. the block, not its shared ReLU)")
            self.sink(name, output)
        return fn

    def forward(self, model, x):
        self.calls = {}
        return model(x)

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []
        return False


@torch.no_grad()
def layer_shapes(model: nn.Module, images, layers=RESNET_LAYERS, device=None) -> dict[str, tuple[int, int, int]]:
    """(channels, height, width) of each layer's output for these images (one image through the model, eval mode)."""
    src, _, src_device = _image_source(images)
    device = torch.device(device) if device is not None else src_device
    mods = _modules(model, layers)
    shapes = {}
    was_training = model.training
    model.eval().to(device)
    try:
        with _Hooks(mods, lambda name, out: shapes.__setitem__(name, tuple(_as_map(out, name).shape[1:]))) as hooks:
            hooks.forward(model, _images_batch(src, torch.arange(1)).to(device))
    finally:
        model.train(was_training)
    return {l: shapes[l] for l in mods}


def _rng(seed: int, layer: str, repeat: int) -> np.random.Generator:
    # one stream per (seed, layer, repeat): the draws of a layer do not depend on which other layers are asked for
    return np.random.default_rng([int(seed), zlib.crc32(layer.encode()), int(repeat)])


def sampling_plan(shapes: Mapping[str, tuple[int, int, int]], n_images: int, *, n_channels: int = 64,
                  points: int = 10_000, repeats: int = 5, seed: int = 0) -> list[LayerSample]:
    """[R]'s draws for every (layer, repeat), from the layer shapes (:func:`layer_shapes`) and the number of images.

    Per layer with output (C, h, w) and repeat r: ``max(1, round(points / (h * w)))`` images drawn without
    replacement (all of them when the set is smaller) and ``min(n_channels, C)`` channels drawn without
    replacement, from a generator seeded by (seed, layer name, r). Deterministic: the same arguments give the
    same plan, so two networks with the same layer shapes get the same images and channels.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be positive, got {n_images}")
    if n_channels < 1 or points < 1 or repeats < 1:
        raise ValueError(f"n_channels, points and repeats must be positive, got {n_channels}, {points}, {repeats}")
    plan = []
    for layer, (c, h, w) in shapes.items():
        wanted = max(1, round(points / (h * w)))
        for r in range(repeats):
            rng = _rng(seed, layer, r)
            imgs = np.sort(rng.choice(n_images, size=min(wanted, n_images), replace=False))
            chans = rng.choice(c, size=min(n_channels, c), replace=False)
            plan.append(LayerSample(layer, r, tuple(int(i) for i in imgs), tuple(int(i) for i in chans),
                                    int(h), int(w), wanted))
    return plan


@torch.no_grad()
def layer_activations(model: nn.Module, images, layers=RESNET_LAYERS, *, plan: list[LayerSample] | None = None,
                      n_channels: int = 64, points: int = 10_000, repeats: int = 5, seed: int = 0,
                      batch_size: int = 128, device=None) -> dict[tuple[str, int], torch.Tensor]:
    """Activations of ``model`` sampled as [R] did, keyed by ``(layer, repeat)``: float32 tensors
    (n_images * h * w, n_channels) on the compute device, one row per spatial position of every sampled image
    (ordered image, row, column), one column per sampled channel.

    ``images``: a :class:`helpers.data.TensorImageDataset` (its evaluation transform is applied) or prepared
    float inputs (N, C, H, W). ``layers``: module names (``model.named_modules()``; for torchvision ResNets
    :data:`RESNET_LAYERS`); outputs (B, C, H, W), or (B, C) taken as 1 x 1 maps. ``plan``: the draws
    (:func:`sampling_plan`); without one it is drawn from ``n_channels``, ``points``, ``repeats`` and ``seed``,
    which gives two networks of the same architecture the same images and channels. Every image any draw needs
    goes through the model once, in eval mode, in float32 (no autocast: reduced precision would lower the
    similarity; TF32 convolutions on CUDA follow torch's ``allow_tf32`` settings); the model is moved to ``device`` (default: the images'), its train/eval mode is restored and
    the hooks are removed afterwards, also on error.
    """
    src, n_total, src_device = _image_source(images)
    device = torch.device(device) if device is not None else src_device
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    mods = _modules(model, layers)
    if plan is None:
        plan = sampling_plan(layer_shapes(model, src, tuple(mods), device), n_total, n_channels=n_channels,
                             points=points, repeats=repeats, seed=seed)
    plan = [s for s in plan if s.layer in mods]
    if not plan:
        raise ValueError(f"the plan has no draw for the layers {list(mods)}")
    if max(max(s.images) for s in plan) >= n_total:
        raise ValueError(f"the plan indexes images beyond the {n_total} given")
    union = np.unique(np.concatenate([np.asarray(s.images) for s in plan]))
    by_layer: dict[str, list[tuple[LayerSample, np.ndarray, torch.Tensor]]] = {}
    for s in plan:
        pos = np.searchsorted(union, np.asarray(s.images))  # where each of its images sits in the union order
        by_layer.setdefault(s.layer, []).append((s, pos, torch.as_tensor(s.channels, device=device)))
    pieces: dict[tuple[str, int], list[torch.Tensor]] = {(s.layer, s.repeat): [] for s in plan}
    window = [0, 0]

    def sink(layer, out):
        fmap = _as_map(out, layer)
        for s, pos, chans in by_layer[layer]:
            if fmap.shape[2:] != (s.height, s.width) or int(chans.max()) >= fmap.shape[1]:
                raise ValueError(f"layer {layer!r} outputs {tuple(fmap.shape[1:])}, the plan expects "
                                 f"{s.height}x{s.width} maps with channel {int(chans.max())}")
            rows = pos[(pos >= window[0]) & (pos < window[1])] - window[0]
            if rows.size:
                sel = fmap.index_select(0, torch.as_tensor(rows, device=fmap.device)).index_select(1, chans)
                pieces[(s.layer, s.repeat)].append(sel.permute(0, 2, 3, 1).reshape(-1, chans.numel()).float())

    was_training = model.training
    model.eval().to(device)
    try:
        with _Hooks(mods, sink) as hooks:
            union_t = torch.as_tensor(union, device=src_device)
            for start in range(0, len(union), batch_size):
                window[:] = [start, min(start + batch_size, len(union))]
                x = _images_batch(src, union_t[start:window[1]]).to(device)
                hooks.forward(model, x)
    finally:
        model.train(was_training)
    return {key: torch.cat(parts) for key, parts in pieces.items()}


def compare_models(model_a: nn.Module, model_b: nn.Module, images, layers=RESNET_LAYERS, *,
                   measures=("cca", "linear_cka"), n_channels: int = 64, points: int = 10_000, repeats: int = 5,
                   seed: int = 0, batch_size: int = 128, device=None):
    """Layer-by-layer similarity of two networks on the same images, sampled as [R] did (same images and channels
    for both, drawn from ``seed`` and ``model_a``'s layer shapes; ``model_b`` must have the same shapes).

    Returns a tidy DataFrame, one row per (layer, repeat, measure): ``layer, stage`` ([R]'s column name where
    the layer is a ResNet stage), ``repeat, n_images, n_images_wanted, height, width, n_points, n_channels,
    few_points, measure, value``. [R] reports the mean over repeats of ``measure == "cca"``. ``measures``: names
    of :data:`MEASURES` or a mapping name -> function(x, y). ``few_points`` flags ``n_points < 10 *
    n_channels``, where CCA is inflated (see :func:`cca`).
    """
    import pandas as pd

    if isinstance(measures, Mapping):
        fns = dict(measures)
    else:
        unknown = [m for m in measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"unknown measures {unknown}; expected names of {sorted(MEASURES)} or a mapping")
        fns = {m: MEASURES[m] for m in measures}
    src, n_total, src_device = _image_source(images)
    shapes_a = layer_shapes(model_a, src, layers, device)
    shapes_b = layer_shapes(model_b, src, layers, device)
    if shapes_a != shapes_b:
        raise ValueError(f"the two models' layer outputs differ: {shapes_a} vs {shapes_b}")
    plan = sampling_plan(shapes_a, n_total, n_channels=n_channels, points=points, repeats=repeats, seed=seed)
    acts_a = layer_activations(model_a, src, layers, plan=plan, batch_size=batch_size, device=device)
    acts_b = layer_activations(model_b, src, layers, plan=plan, batch_size=batch_size, device=device)
    rows = []
    for s in plan:
        xa, xb = acts_a[(s.layer, s.repeat)], acts_b[(s.layer, s.repeat)]
        for name, fn in fns.items():
            rows.append({"layer": s.layer, "stage": R_STAGE_OF_LAYER.get(s.layer, s.layer), "repeat": s.repeat,
                         "n_images": len(s.images), "n_images_wanted": s.n_images_wanted, "height": s.height,
                         "width": s.width, "n_points": s.n_points, "n_channels": s.n_channels,
                         "few_points": s.n_points < 10 * s.n_channels, "measure": name, "value": float(fn(xa, xb))})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# predictions


def _predicted_classes(pred, name: str, n: int | None = None) -> torch.Tensor:
    t = to_tensor(pred, name)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim == 2:
        if t.shape[1] < 2:
            raise ValueError(f"{name}: (N, C) scores need C >= 2 columns, got {tuple(t.shape)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or Inf scores")
        t = t.argmax(1)
    elif t.ndim == 1:
        if t.is_floating_point():
            if not bool(torch.isfinite(t).all()) or not bool((t == t.round()).all()):
                raise ValueError(f"{name}: 1-D predictions must be class indices; pass (N, C) scores (probabilities "
                                 "or logits) to take the arg-max, or threshold binary probabilities yourself")
    else:
        raise ValueError(f"{name} must be (N,) class indices or (N, C) scores, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    if n is not None and t.numel() != n:
        raise ValueError(f"{name} has {t.numel()} predictions, labels have {n}")
    return t.to(torch.int64).cpu()


def prediction_similarity(pred_a, pred_b, labels) -> dict[str, float]:
    """Error consistency of two classifiers on the same test images ([R]'s "prediction similarity").

    ``pred_a``, ``pred_b``: (N,) predicted classes or (N, C) scores (arg-max taken); ``labels``: (N,) classes.
    Returns a dict of floats:

    - ``n``, ``accuracy_a``, ``accuracy_b``;
    - ``error_agreement``: fraction of images on which both are right or both are wrong (what [R] plots as
      "observed"); ``prediction_agreement``: fraction with the same predicted class (equal to the former for
      two classes);
    - ``independent_baseline``: the agreement expected of two independent classifiers with these accuracies,
      ``acc_a acc_b + (1 - acc_a)(1 - acc_b)``;
    - ``r_baseline_as_coded``: [R]'s "independent predictions", coded as ``acc_a^2 + (1 - acc_a)^2`` (model A's
      accuracy used twice): a defect, kept for comparison with their figure; it equals the correct baseline
      only when the accuracies are equal;
    - ``kappa``: Cohen's kappa of error consistency (Geirhos et al. 2020),
      ``(error_agreement - independent_baseline) / (1 - independent_baseline)``: 0 for independent errors,
      1 for identical errors, negative for fewer shared errors than chance. NaN (documented, not an error)
      when the baseline is 1, i.e. one network is always right and the other always right, or both always
      wrong: there is no error pattern to agree on.
    """
    y = to_tensor(labels, "labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.numel() == 0:
        raise ValueError(f"labels must be a non-empty (N,) class vector, got shape {tuple(y.shape)}")
    if y.is_floating_point() and not bool((y == y.round()).all()):
        raise ValueError("labels must be integer classes")
    y = y.to(torch.int64).cpu()
    a, b = _predicted_classes(pred_a, "pred_a", y.numel()), _predicted_classes(pred_b, "pred_b", y.numel())
    right_a, right_b = a == y, b == y
    acc_a, acc_b = float(right_a.double().mean()), float(right_b.double().mean())
    agree = float((right_a == right_b).double().mean())
    indep = acc_a * acc_b + (1 - acc_a) * (1 - acc_b)
    kappa = (agree - indep) / (1 - indep) if indep < 1 else float("nan")
    return {"n": int(y.numel()), "accuracy_a": acc_a, "accuracy_b": acc_b, "error_agreement": agree,
            "prediction_agreement": float((a == b).double().mean()), "independent_baseline": indep,
            "r_baseline_as_coded": acc_a**2 + (1 - acc_a) ** 2, "kappa": kappa}


# ----------------------------------------------------------------------------------------------------------
# weights (this project's extension)


def _weights(model) -> dict[str, tuple[str, torch.Tensor]]:
    """name -> (kind, weight) of conv and linear layers: from a module (by type), or from a state dict (weights of
    2 or more dimensions: 4-D conv, 2-D linear; BatchNorm weights are 1-D and its statistics buffers, so both
    are left out)."""
    out = {}
    if isinstance(model, nn.Module):
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and m.weight is not None:
                out[name] = ("linear" if isinstance(m, nn.Linear) else "conv", m.weight.detach())
        return out
    if isinstance(model, Mapping):
        for key, t in model.items():
            if key.endswith(".weight") and isinstance(t, torch.Tensor) and t.ndim >= 2 and t.is_floating_point():
                out[key[: -len(".weight")]] = ("linear" if t.ndim == 2 else "conv", t.detach())
        return out
    raise ValueError(f"expected an nn.Module or a state dict, got {type(model).__name__}")


def _stage(name: str) -> str:
    return name.split(".")[0]


def weight_change(pretrained, finetuned, mismatched: str = "skip"):
    """How far fine-tuning moved each conv / linear layer: this project's extension ([R] has no weight-space
    measure; PROTOCOL.md section 8).

    ``pretrained``, ``finetuned``: ``nn.Module``s or state dicts of the same architecture. Layers are matched by
    name; only conv and linear *weights* are compared (biases, BatchNorm affine parameters and running
    statistics are excluded). Layers present in only one model, or whose shapes differ (a replaced head with
    a different number of classes), are left out (``mismatched="skip"``) or raise (``"error"``).

    Returns a tidy DataFrame, one row per layer: ``layer, stage`` (first component of the name: for ResNets
    ``conv1`` (stem), ``layer1`` .. ``layer4``, ``fc``), ``kind, n_params, norm_pretrained, norm_finetuned,
    norm_change`` (L2 of the difference), ``relative_change = |W_ft - W_pre| / |W_pre|`` (0 = untouched) and
    ``cosine`` of the two flattened weights (1 = same direction), plus ``dot`` for aggregation
    (:func:`weight_change_by_stage`). Computed in float64 on the pre-trained weights' device.
    """
    import pandas as pd

    if mismatched not in ("skip", "error"):
        raise ValueError(f"mismatched must be 'skip' or 'error', got {mismatched!r}")
    wa, wb = _weights(pretrained), _weights(finetuned)
    problems = [f"{n}: only in the pre-trained model" for n in wa if n not in wb]
    problems += [f"{n}: only in the fine-tuned model" for n in wb if n not in wa]
    problems += [f"{n}: shapes {tuple(wa[n][1].shape)} vs {tuple(wb[n][1].shape)}"
                 for n in wa if n in wb and wa[n][1].shape != wb[n][1].shape]
    if problems and mismatched == "error":
        raise ValueError("layers that cannot be compared: " + "; ".join(problems))
    rows = []
    for name, (kind, a) in wa.items():
        if name not in wb or wb[name][1].shape != a.shape:
            continue
        a = a.to(torch.float64).flatten()
        b = wb[name][1].to(device=a.device, dtype=torch.float64).flatten()
        if not bool(torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise ValueError(f"layer {name!r} has NaN or Inf weights")
        na, nb, nd = float(a.norm()), float(b.norm()), float((b - a).norm())
        dot = float(a @ b)
        rows.append({"layer": name, "stage": _stage(name), "kind": kind, "n_params": int(a.numel()),
                     "norm_pretrained": na, "norm_finetuned": nb, "norm_change": nd,
                     "relative_change": nd / na if na > 0 else float("inf") if nd > 0 else 0.0,
                     "cosine": dot / (na * nb) if na > 0 and nb > 0 else float("nan"), "dot": dot})
    if not rows:
        raise ValueError("no conv or linear layer could be compared (different architectures?)")
    return pd.DataFrame(rows)


def weight_change_by_stage(table):
    """:func:`weight_change` aggregated per ``stage``, the weights of a stage taken as one vector:
    ``relative_change = sqrt(sum |dW|^2) / sqrt(sum |W_pre|^2)``, ``cosine = sum <W_pre, W_ft> / (|W_pre| |W_ft|)``,
    with ``n_layers`` and ``n_params``. Stages keep their order of appearance (conv1, layer1 .. layer4, fc)."""
    import pandas as pd

    rows = []
    for stage, g in table.groupby("stage", sort=False):
        na, nb = math.sqrt((g.norm_pretrained**2).sum()), math.sqrt((g.norm_finetuned**2).sum())
        nd = math.sqrt((g.norm_change**2).sum())
        rows.append({"stage": stage, "n_layers": len(g), "n_params": int(g.n_params.sum()),
                     "relative_change": nd / na if na > 0 else float("nan"),
                     "cosine": g["dot"].sum() / (na * nb) if na > 0 and nb > 0 else float("nan")})
    return pd.DataFrame(rows)

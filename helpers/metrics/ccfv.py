"""CC-FV: class consistency with feature variety, for segmentation models (Yang et al., MICCAI 2023 [S]).

CC-FV ranks pre-trained segmentation networks on a labelled target set without fine-tuning them. For each
decoder layer it samples pixel features and computes

* **class consistency** (CC, lower = better): for every class, a Gaussian is fitted to the class's sampled
  features in each case (image); CC is the mean over classes of the mean over case pairs of the distance
  between the two Gaussians (2-Wasserstein by default). Features of one class that look alike across cases
  transfer well.
* **feature variety** (FV): the hyperspherical energy of the per-case mean features (of pixels sampled
  uniformly over each image) put on the unit sphere: the mean over case pairs of 1 / ||f_i - f_j||. *Lower*
  energy = the cases spread more uniformly over the sphere = more variety = better. It guards against
  features that are consistent only because they have collapsed.

and combines the layers as ``sum_l [log(1 / FV_l) - log(CC_l)] = -sum_l log(FV_l * CC_l)``; higher = better.

The pipeline of a scoring stage (positions depend only on the masks, so every candidate model is scored on the
same pixels)::

    sample = sample_pixels(masks)                       # once per target set
    for each model, for each decoder layer l:
        rows, grows = [], []
        for start, images in batches:                   # feature map upsampled to the mask size
            fmap = upsample(layer_output(images), masks.shape[-2:])
            rows.append(gather_pixels(sample, fmap, start))
            grows.append(gather_pixels(sample, fmap, start, which="global"))
        parts[l] = ccfv_parts(cat(rows), sample.label, sample.case, cat(grows), sample.global_case)
    score = ccfv(parts)

What the official code does (``EndoluminalSurgicalVision-IMR/CCFV``; read, not copied), and what differs here
-------------------------------------------------------------------------------------------------------------
``utils/sliding_window_sampling.py`` (``ms_sliding_window_sampling``), ``utils/ccfv.py`` (``cal_w_distance``,
``cal_variety``) and ``main.py`` (``evaluate``):

* **Sampling.** Per case and per layer, for every label value present *including background 0*, it draws
  ``min(n_pixels, sample_num[layer])`` voxels uniformly without replacement (``np.random.choice``), a *fixed*
  number per class (its UNet config: 100, 200, 400 for ``seg_outputs.0/1/2``), not proportional to class size.
  The features are the *inputs* of the deep-supervision heads ``seg_outputs.*`` (forward hook), trilinearly
  resized to the window size. Here (PROTOCOL section 7): the class samples of a case are split across the
  classes present proportionally to their pixel counts, with a floor per class (``allocation="equal"`` gives
  the official equal split); one sample serves every layer and model.
* **Background.** Sampled, and used in the global features, but skipped in CC (``if lb == 0: continue``).
  Here ``sample_pixels(include_background=False)`` leaves it out of the class samples, so CC runs over the
  foreground classes as officially; FV uses separate, uniform global samples.
* **Distance.** ``cal_w_distance`` fits ``np.mean`` / ``np.cov`` (unbiased) Gaussians and returns
  ``sqrt(|W2^2|)`` with the cross term ``trace(sqrtm(cov1 @ cov2))`` (``scipy.linalg.sqrtm`` of a
  non-symmetric product, complex when the covariances are singular, which they are whenever a class has fewer
  samples than dimensions; ``abs`` then takes the modulus). Here: the same unbiased Gaussians and the same
  *unsquared* W2 by default (``squared=True`` for W2^2), with the cross term tr((S1^1/2 S2 S1^1/2)^1/2) from
  symmetric eigendecompositions (real, clamped at 0), computed through an r x r factor (r = min(samples, D))
  per case pair.
* **Averaging (bug, fixed here).** Per layer, with ``w = 0`` before the class loop and L = number of cases,
  K = ``num_classes`` (foreground)::

      for each foreground class k:   w += sum_{i<j} d_k(i, j);   w += w / (L * L / 2) / K

  The ``+=`` on the normalising line (instead of an assignment of a mean) and the accumulator shared across
  classes make the result ``sum_k S_k (1 + a)^(K - k + 1)`` with S_k the *sum* over pairs and
  a = 2 / (L^2 K): a sum of sums with a slight extra weight on the earlier classes, and a pair count of L^2 / 2
  instead of L (L - 1) / 2. For one class it is S_1 (1 + a), a constant multiple ((1 + a) L (L - 1) / 2, the
  same for every model) of the mean, so rankings are unaffected; for several classes it is not a mean over
  classes of means over pairs. Here CC = mean over classes of the mean over case pairs (pairs of the cases
  holding the class); ``official_average=True`` gives the official expression exactly (with L = the cases
  holding the class), so a test can show it is the only difference.
* **Feature variety.** One vector per case: the mean of all that case's sampled features (all classes,
  background included, so class-balanced rather than area-weighted), *not* L2-normalised; ``cal_variety`` =
  mean over case pairs i < j of 1 / sqrt(||f_i - f_j||^2 + 1e-3) (a hyperspherical energy with a softening
  eps). Here: the mean of the uniform global samples of each case, L2-normalised onto the unit sphere
  (``normalize=False`` for the official raw vectors), same pairs and the same eps = 1e-3.
* **Combination and direction.** ``ccfv += np.log(var_f / w_distance)`` summed over layers, where ``var_f`` is
  the *energy* (this is the stored ``main.py`` the PROTOCOL follows; another stored version of ``main.py`` has
  ``np.log(w_distance / var_f)``, the negation). With FV = energy, ``log(FV / CC)`` rewards *higher* energy,
  i.e. case features bunched together (less variety), the opposite of the hyperspherical-energy reading
  (lower energy = more uniform = better) and of the term's name. Here the variety term enters as
  ``-log(energy)`` (variety = 1 / energy), so both terms point the same way and the score is higher = better:
  ``ccfv = sum_l -log(FV_l * CC_l)``. ``ccfv(..., official_direction=True)`` gives ``sum_l log(FV_l / CC_l)``.
  (With the official unnormalised features, W2 scales with a global rescaling s of a layer's features and the
  energy with 1/s (up to its eps), so the fixed score is about invariant to it; the official one moves by
  -2 log s.)
* **Absent classes.** The official code fails (``KeyError``) when a case lacks a class (its per-case dict is
  keyed by ``range(len(unique))``). Here a (case, class) with fewer than 2 sampled pixels is left out and the
  class is averaged over the pairs of cases that hold it; a class held by fewer than 2 cases is an error.

All computations are in float64 on the features' device (CUDA if the inputs are there); sampling runs on the
CPU with NumPy (seeded, device independent).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch

from ._common import _check_matrix, finite_float, to_tensor

__all__ = ["PixelSample", "SampleRows", "CCFVParts", "sample_pixels", "gather_pixels", "sample_rows",
           "gaussian_w2", "gaussian_kl", "gaussian_bhattacharyya", "class_consistency", "feature_variety",
           "ccfv_parts", "ccfv", "unit_rows"]

_DISTANCES = ("wasserstein", "kl", "bhattacharyya")
_BUDGET = 1 << 27  # bytes of float64 temporaries per chunk of case pairs (128 MiB)


# ------------------------------------------------------------------------------------------------ sampling

class PixelSample(NamedTuple):
    """Pixel positions for CC-FV, shared by every candidate model (they depend only on the masks and seed).

    ``case`` (M,), ``index`` (M,) flat position ``y * W + x``, ``label`` (M,) class id: the class samples,
    ordered by case, then class, then position. ``global_case`` (G,), ``global_index`` (G,): the global
    samples (uniform over each image), ordered by case then position. All int64 CPU tensors. ``shape`` is
    the (N, H, W) of the masks, used to check the feature maps.
    """
    case: torch.Tensor
    index: torch.Tensor
    label: torch.Tensor
    global_case: torch.Tensor
    global_index: torch.Tensor
    shape: tuple


class SampleRows(NamedTuple):
    """Case ids and labels (``None`` for global samples) of the sampled rows of a range of cases."""
    case: torch.Tensor
    label: torch.Tensor | None


def _masks(masks, num_classes) -> np.ndarray:
    if isinstance(masks, torch.Tensor):
        m = masks.detach().cpu().numpy()
    else:
        m = np.asarray(masks)
    if m.dtype == object or m.dtype.kind not in "biuf":
        raise ValueError(f"masks must be integer class ids, got dtype {m.dtype}")
    if m.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {m.shape}")
    if m.dtype.kind == "f":
        if not np.all(np.isfinite(m)) or not np.all(m == np.round(m)):
            raise ValueError("masks must hold integer class ids (got non-integral or non-finite values)")
    m = m.astype(np.int64)
    if m.shape[0] < 2:
        raise ValueError(f"CC-FV compares cases with each other and needs at least 2 cases, got {m.shape[0]}")
    if m.size and int(m.min()) < 0:
        raise ValueError(f"masks must hold class ids 0..C-1, got a negative id ({int(m.min())})")
    if num_classes is not None and m.size and int(m.max()) >= num_classes:
        raise ValueError(f"masks must hold class ids 0..{num_classes - 1}, got {int(m.max())}")
    return m


def _allocate(counts: np.ndarray, per_case: int, min_per_class: int, allocation: str) -> np.ndarray:
    floor = np.minimum(counts, min_per_class)
    if allocation == "equal":
        n = np.full_like(counts, max(per_case // len(counts), 1))
    else:
        total = int(counts.sum())
        if per_case >= total:
            return counts.copy()
        quota = per_case * counts / total
        n = np.floor(quota).astype(np.int64)
        rest = per_case - int(n.sum())
        order = np.argsort(-(quota - n), kind="stable")  # largest remainders, ties by class order
        n[order[:rest]] += 1
    return np.minimum(np.maximum(n, floor), counts)


def sample_pixels(masks, *, per_case: int = 256, global_per_case: int = 256, include_background: bool = False,
                  min_per_class: int = 16, allocation: str = "proportional", num_classes: int | None = None,
                  seed: int = 0) -> PixelSample:
    """Choose the pixels CC-FV reads, from the target masks alone (so every model sees the same pixels).

    ``masks``: (N, H, W) integer class ids, 0 = background (NumPy or torch, any device).
    Class samples: per case, about ``per_case`` pixels split across the classes present (background only with
    ``include_background=True``; the official code leaves it out of CC) in proportion to their pixel counts
    (largest-remainder rounding), each present class getting at least ``min(min_per_class, its pixel count)``
    (so a case's total can exceed ``per_case`` when small classes are raised to the floor, and is below it when
    the case has fewer foreground pixels). ``allocation="equal"`` splits ``per_case`` equally across the
    present classes instead (what the official code does: a fixed count per class), same floor. Drawn
    uniformly without replacement within each class. Global samples: ``min(global_per_case, H * W)`` pixels
    per case uniformly over the image, without replacement (for feature variety).
    ``num_classes``: when given, ids >= num_classes are an error. ``seed``: each case uses
    ``numpy.random.default_rng([seed, case])``, so a case's pixels do not depend on the other cases.
    Defaults (ours; the official code draws 100/200/400 voxels per class per layer from 3-D CT volumes):
    per_case = global_per_case = 256, min_per_class = 16.
    """
    if allocation not in ("proportional", "equal"):
        raise ValueError(f"allocation must be 'proportional' or 'equal', got {allocation!r}")
    for name, v, lo in (("per_case", per_case, 1), ("global_per_case", global_per_case, 1),
                        ("min_per_class", min_per_class, 1)):
        if int(v) != v or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    m = _masks(masks, num_classes)
    N, H, W = m.shape
    case, index, label, gcase, gindex = [], [], [], [], []
    for i in range(N):
        rng = np.random.default_rng([int(seed), i])
        flat = m[i].ravel()
        order = np.argsort(flat, kind="stable")  # positions grouped by class, ascending within a class
        classes, starts, counts = np.unique(flat[order], return_index=True, return_counts=True)
        keep = classes != 0 if not include_background else np.ones(len(classes), dtype=bool)
        classes, starts, counts = classes[keep], starts[keep], counts[keep]
        if len(classes):
            take = _allocate(counts, int(per_case), int(min_per_class), allocation)
            for k, s, c, t in zip(classes, starts, counts, take):
                chosen = np.sort(order[s + rng.choice(c, size=int(t), replace=False)])
                index.append(chosen)
                case.append(np.full(len(chosen), i, dtype=np.int64))
                label.append(np.full(len(chosen), k, dtype=np.int64))
        g = np.sort(rng.choice(H * W, size=min(int(global_per_case), H * W), replace=False))
        gindex.append(g)
        gcase.append(np.full(len(g), i, dtype=np.int64))
    if not index:
        raise ValueError("masks hold no pixel of any class to sample (all background; "
                         "include_background=True samples the background as a class)")

    def cat(parts):
        return torch.from_numpy(np.concatenate(parts).astype(np.int64))

    return PixelSample(cat(case), cat(index), cat(label), cat(gcase), cat(gindex), (N, H, W))


def _which(sample: PixelSample, which: str):
    if which == "class":
        return sample.case, sample.index, sample.label
    if which == "global":
        return sample.global_case, sample.global_index, None
    raise ValueError(f"which must be 'class' or 'global', got {which!r}")


def _span(case: torch.Tensor, start: int, stop: int) -> tuple[int, int]:
    bounds = torch.searchsorted(case, torch.tensor([start, stop], dtype=case.dtype))
    return int(bounds[0]), int(bounds[1])


def sample_rows(sample: PixelSample, start: int, stop: int, which: str = "class") -> SampleRows:
    """``SampleRows(case, label)`` of the sampled rows of cases ``start..stop-1``, in the order that
    :func:`gather_pixels` returns them (``label`` is ``None`` for ``which="global"``)."""
    case, _, label = _which(sample, which)
    lo, hi = _span(case, int(start), int(stop))
    return SampleRows(case[lo:hi], None if label is None else label[lo:hi])


def gather_pixels(sample: PixelSample, feature_map, start: int = 0, which: str = "class") -> torch.Tensor:
    """The sampled feature rows of a batch of cases: (m, D), in sample order, on the feature map's device.

    ``feature_map``: (B, D, H, W) features of cases ``start .. start+B-1`` (already resized to the masks' H x W;
    NumPy or torch, any dtype). Concatenating the results of consecutive batches gives all M (``which="class"``)
    or G (``which="global"``) rows, matching ``sample.label`` / ``sample.case`` (or ``sample.global_case``).
    Raises ``ValueError`` when the spatial size differs from the masks', the batch runs past the last case, or a
    gathered feature is NaN/Inf.
    """
    fm = to_tensor(feature_map, "feature_map")
    if fm.ndim != 4:
        raise ValueError(f"feature_map must have shape (B, D, H, W), got {tuple(fm.shape)}")
    N, H, W = sample.shape
    B, D = fm.shape[:2]
    if tuple(fm.shape[2:]) != (H, W):
        raise ValueError(f"feature map spatial size {tuple(fm.shape[2:])} does not match the masks' {(H, W)}; "
                         "resize the feature map to the mask size before gathering")
    start = int(start)
    if start < 0 or start + B > N:
        raise ValueError(f"batch of {B} cases starting at {start} runs outside the {N} sampled cases")
    case, index, _ = _which(sample, which)
    lo, hi = _span(case, start, start + B)
    c = (case[lo:hi] - start).to(fm.device)
    ix = index[lo:hi].to(fm.device)
    if not fm.dtype.is_floating_point:
        fm = fm.to(torch.float64)
    rows = fm.reshape(B, D, H * W)[c, :, ix]  # (m, D)
    if not bool(torch.isfinite(rows).all()):
        bad = int((~torch.isfinite(rows)).any(dim=1).sum())
        raise ValueError(f"feature map of cases {start}..{start + B - 1} has NaN or Inf values at {bad} of the "
                         f"{rows.shape[0]} sampled pixels")
    return rows


# --------------------------------------------------------------------------------- Gaussian distances

def _gaussians(mu1, cov1, mu2, cov2, name: str):
    ts = []
    for x, n in ((mu1, "mu1"), (cov1, "cov1"), (mu2, "mu2"), (cov2, "cov2")):
        t = to_tensor(x, n)
        if not t.dtype.is_floating_point:
            t = t.to(torch.float64)
        ts.append(t)
    device = ts[0].device
    ts = [t.to(device=device, dtype=torch.float64) for t in ts]
    m1, c1, m2, c2 = ts
    if m1.ndim < 1 or c1.ndim < 2 or m2.ndim < 1 or c2.ndim < 2:
        raise ValueError(f"{name}: means must be (..., D) and covariances (..., D, D)")
    D = m1.shape[-1]
    for t, n in ((c1, "cov1"), (c2, "cov2")):
        if t.shape[-2:] != (D, D):
            raise ValueError(f"{name}: {n} has shape {tuple(t.shape)}, expected (..., {D}, {D})")
    if m2.shape[-1] != D:
        raise ValueError(f"{name}: mu1 and mu2 have different dimensions ({D} != {m2.shape[-1]})")
    for t, n in zip(ts, ("mu1", "cov1", "mu2", "cov2")):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: {n} contains NaN or Inf values")
    try:
        batch = torch.broadcast_shapes(m1.shape[:-1], c1.shape[:-2], m2.shape[:-1], c2.shape[:-2])
    except RuntimeError as exc:
        raise ValueError(f"{name}: batch shapes do not broadcast: {exc}") from exc
    m1, m2 = m1.expand(*batch, D), m2.expand(*batch, D)
    c1, c2 = _sym(c1.expand(*batch, D, D)), _sym(c2.expand(*batch, D, D))
    return m1, c1, m2, c2


def _sym(S: torch.Tensor) -> torch.Tensor:
    return 0.5 * (S + S.transpose(-1, -2))


def _sqrtm_psd(S: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root by eigendecomposition, negative (round-off) eigenvalues clamped to 0."""
    evals, V = torch.linalg.eigh(S)
    return (V * evals.clamp_min(0).sqrt().unsqueeze(-2)) @ V.transpose(-1, -2)


def _trace_sqrt_psd(S: torch.Tensor) -> torch.Tensor:
    """tr(S^1/2) of a symmetric PSD matrix (eigenvalues clamped at 0)."""
    return torch.linalg.eigvalsh(_sym(S)).clamp_min(0).sqrt().sum(-1)


def _w2_sq(m1, s1, tr1, m2, c2, tr2) -> torch.Tensor:
    cross = _trace_sqrt_psd(s1 @ c2 @ s1)
    return (((m1 - m2) ** 2).sum(-1) + tr1 + tr2 - 2.0 * cross).clamp_min(0)


def gaussian_w2(mu1, cov1, mu2, cov2) -> torch.Tensor:
    """Squared 2-Wasserstein distance between N(mu1, cov1) and N(mu2, cov2), batched over leading dims.

    W2^2 = ||mu1 - mu2||^2 + tr(cov1) + tr(cov2) - 2 tr((cov1^1/2 cov2 cov1^1/2)^1/2). Both square roots come
    from symmetric eigendecompositions in float64 with tiny negative eigenvalues clamped to 0, so singular
    (rank-deficient) covariances are fine; the result is clamped at 0. Shapes: means (..., D), covariances
    (..., D, D), broadcast together; returns a float64 tensor of the batch shape on the inputs' device.
    Symmetric in its two Gaussians (up to round-off), 0 for identical ones.
    """
    m1, c1, m2, c2 = _gaussians(mu1, cov1, mu2, cov2, "gaussian_w2")
    tr1 = c1.diagonal(dim1=-2, dim2=-1).sum(-1)
    tr2 = c2.diagonal(dim1=-2, dim2=-1).sum(-1)
    return _w2_sq(m1, _sqrtm_psd(c1), tr1, m2, c2, tr2)


def _cholesky(S: torch.Tensor, what: str) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info != 0).any()):
        raise ValueError(f"{what}: covariance is not positive definite; regularise it (shrinkage > 0 or eps > 0)")
    return L


def _logdet_chol(L: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1)


def _kl_chol(m1, L1, ld1, m2, L2, ld2) -> torch.Tensor:
    """KL(N1 || N2) from Cholesky factors and log-determinants."""
    D = m1.shape[-1]
    A = torch.linalg.solve_triangular(L2, L1, upper=False)  # L2^-1 L1: tr(S2^-1 S1) = ||A||_F^2
    b = torch.linalg.solve_triangular(L2, (m2 - m1).unsqueeze(-1), upper=False).squeeze(-1)
    return 0.5 * ((A ** 2).sum((-1, -2)) + (b ** 2).sum(-1) - D + ld2 - ld1)


def gaussian_kl(mu1, cov1, mu2, cov2, *, symmetric: bool = True) -> torch.Tensor:
    """Kullback-Leibler divergence between Gaussians, batched over leading dims (float64, inputs' device).

    KL(N1 || N2) = 1/2 [tr(cov2^-1 cov1) + (mu2 - mu1)^T cov2^-1 (mu2 - mu1) - D + ln det cov2 - ln det cov1].
    ``symmetric=True`` (default, what CC uses so that it does not depend on the order of the cases) returns
    the mean of both directions, (KL(1||2) + KL(2||1)) / 2; ``symmetric=False`` returns KL(1||2). Needs
    positive definite covariances (Cholesky); otherwise a ``ValueError`` asks for regularisation.
    """
    m1, c1, m2, c2 = _gaussians(mu1, cov1, mu2, cov2, "gaussian_kl")
    L1, L2 = _cholesky(c1, "gaussian_kl cov1"), _cholesky(c2, "gaussian_kl cov2")
    ld1, ld2 = _logdet_chol(L1), _logdet_chol(L2)
    kl = _kl_chol(m1, L1, ld1, m2, L2, ld2)
    if symmetric:
        kl = 0.5 * (kl + _kl_chol(m2, L2, ld2, m1, L1, ld1))
    return kl


def _bhatt_chol(m1, c1, ld1, m2, c2, ld2) -> torch.Tensor:
    L = _cholesky(0.5 * (c1 + c2), "gaussian_bhattacharyya (cov1 + cov2) / 2")
    b = torch.linalg.solve_triangular(L, (m1 - m2).unsqueeze(-1), upper=False).squeeze(-1)
    return 0.125 * (b ** 2).sum(-1) + 0.5 * (_logdet_chol(L) - 0.5 * (ld1 + ld2))


def gaussian_bhattacharyya(mu1, cov1, mu2, cov2) -> torch.Tensor:
    """Bhattacharyya distance between Gaussians, batched over leading dims (float64, inputs' device).

    D_B = 1/8 (mu1 - mu2)^T S^-1 (mu1 - mu2) + 1/2 ln(det S / sqrt(det cov1 det cov2)), S = (cov1 + cov2) / 2.
    Symmetric. Needs positive definite covariances (Cholesky); otherwise a ``ValueError``.
    """
    m1, c1, m2, c2 = _gaussians(mu1, cov1, mu2, cov2, "gaussian_bhattacharyya")
    ld1 = _logdet_chol(_cholesky(c1, "gaussian_bhattacharyya cov1"))
    ld2 = _logdet_chol(_cholesky(c2, "gaussian_bhattacharyya cov2"))
    return _bhatt_chol(m1, c1, ld1, m2, c2, ld2)


# ------------------------------------------------------------------------------------------ CC and FV

def _ids(x, name: str, n: int, device) -> torch.Tensor:
    t = to_tensor(x, name, device)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got {tuple(t.shape)}")
    if t.shape[0] != n:
        raise ValueError(f"features and {name} have different lengths: {n} != {t.shape[0]}")
    if t.dtype.is_floating_point:
        if not bool(torch.isfinite(t).all()) or not bool((t == torch.round(t)).all()):
            raise ValueError(f"{name} must be integers (got non-integral or non-finite values)")
    t = t.to(torch.int64)
    if n and int(t.min()) < 0:
        raise ValueError(f"{name} must be non-negative ids (class ids 0..C-1 / case indices), got {int(t.min())}")
    return t


def _pair_chunks(P: int, per_pair_bytes: int):
    step = max(1, _BUDGET // max(per_pair_bytes, 1))
    for lo in range(0, P, step):
        yield lo, min(P, lo + step)


def _class_distances(X, counts, distance, shrinkage, eps, squared, k) -> torch.Tensor:
    """Distances between the Gaussians of one class over all pairs i < j of its L cases: (P,) float64.

    ``X``: the class's rows sorted by case, ``counts``: (L,) rows per case (each >= 2)."""
    L, D = counts.numel(), X.shape[1]
    dev = X.device
    group = torch.repeat_interleave(torch.arange(L, device=dev), counts)
    cnt = counts.to(X.dtype)
    mu = torch.zeros(L, D, dtype=X.dtype, device=dev).index_add_(0, group, X) / cnt[:, None]
    A = (X - mu[group]) / torch.sqrt(cnt - 1)[group, None]  # A_i^T A_i = unbiased covariance of case i
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(X.shape[0], device=dev) - starts[group]
    nmax = int(counts.max())
    F = torch.zeros(L, nmax, D, dtype=X.dtype, device=dev)
    F[group, pos] = A  # zero rows pad: they leave F_i^T F_i unchanged
    tr = torch.zeros(L, dtype=X.dtype, device=dev).index_add_(0, group, (A ** 2).sum(1))  # tr(S_i)
    iu = torch.triu_indices(L, L, 1, device=dev)
    out = torch.empty(iu.shape[1], dtype=X.dtype, device=dev)
    regular = shrinkage > 0 or eps > 0
    if distance == "wasserstein" and not regular:
        if nmax > D:  # factor by the D x D square root instead of the (n x D) centred rows
            F = _sqrtm_psd(_sym(F.transpose(1, 2) @ F))
        r = F.shape[1]
        for lo, hi in _pair_chunks(iu.shape[1], 8 * (2 * r * D + 3 * r * r)):
            i, j = iu[0, lo:hi], iu[1, lo:hi]
            M = F[i] @ F[j].transpose(1, 2)  # singular values of M = eigenvalues of (S_i^1/2 S_j S_i^1/2)^1/2
            cross = _trace_sqrt_psd(M @ M.transpose(1, 2))
            out[lo:hi] = (((mu[i] - mu[j]) ** 2).sum(-1) + tr[i] + tr[j] - 2.0 * cross).clamp_min(0)
    else:
        S = _sym(F.transpose(1, 2) @ F)  # (L, D, D)
        scale = float(tr.mean()) / D
        ridge = shrinkage * tr / D + eps * scale
        S = (1.0 - shrinkage) * S + ridge[:, None, None] * torch.eye(D, dtype=X.dtype, device=dev)
        tr = S.diagonal(dim1=-2, dim2=-1).sum(-1)
        if distance == "wasserstein":
            root = _sqrtm_psd(S)
            for lo, hi in _pair_chunks(iu.shape[1], 8 * 6 * D * D):
                i, j = iu[0, lo:hi], iu[1, lo:hi]
                out[lo:hi] = _w2_sq(mu[i], root[i], tr[i], mu[j], S[j], tr[j])
        else:
            Lc, info = torch.linalg.cholesky_ex(S)
            if bool((info != 0).any()):
                raise ValueError(f"class {k}: the covariance of {int((info != 0).sum())} case(s) is not positive "
                                 "definite (constant features?); increase shrinkage or eps")
            ld = _logdet_chol(Lc)
            for lo, hi in _pair_chunks(iu.shape[1], 8 * 8 * D * D):
                i, j = iu[0, lo:hi], iu[1, lo:hi]
                if distance == "kl":
                    out[lo:hi] = 0.5 * (_kl_chol(mu[i], Lc[i], ld[i], mu[j], Lc[j], ld[j])
                                        + _kl_chol(mu[j], Lc[j], ld[j], mu[i], Lc[i], ld[i]))
                else:
                    out[lo:hi] = _bhatt_chol(mu[i], S[i], ld[i], mu[j], S[j], ld[j])
        if distance != "wasserstein":
            return out
    return out if squared else out.sqrt()


def class_consistency(features, labels, cases, *, distance: str = "wasserstein", shrinkage: float | None = None,
                      eps: float | None = None, squared: bool = False, official_average: bool = False,
                      absent: str = "skip") -> float:
    """Class consistency (CC) of pixel features: lower = the classes look more alike across cases.

    ``features`` (M, D) sampled pixel features (NumPy or torch; float64 on their device), ``labels`` (M,)
    class ids >= 0 (every id present is a class; leave the background out when sampling, as the official code
    does), ``cases`` (M,) case (image) ids >= 0. For each class k and case i with at least 2 sampled pixels, a
    Gaussian N(mu_ik, S_ik) is fitted (sample mean, unbiased covariance, as ``np.cov``). Then

        CC = mean over classes k of [mean over pairs i < j of the cases holding k of d(N_ik, N_jk)].

    ``distance``: ``"wasserstein"`` (default) - the 2-Wasserstein distance, *unsquared* as in the official
    code (``squared=True`` gives W2^2, the :func:`gaussian_w2` value; rank-deficient covariances, i.e. fewer
    samples than dimensions, need no regularisation); ``"kl"`` - the symmetrised KL divergence (mean of both
    directions); ``"bhattacharyya"``. These two are the ablations of [S] Table 2 and need full-rank
    covariances: S' = (1 - shrinkage) S + (shrinkage tr(S)/D + eps s) I, with s the mean per-dimension
    variance of the class over its cases. Defaults: shrinkage = eps = 0 for wasserstein (the official
    estimator); shrinkage = 0.1, eps = 1e-6 for kl and bhattacharyya (ours). Any shrinkage/eps > 0 is also
    applied to wasserstein.
    Absent classes: a (case, class) with fewer than 2 sampled pixels has no covariance and is left out; the
    class is averaged over the pairs of the cases that hold it (``absent="skip"``, the default: real masks often
    lack a structure in some slices). ``absent="error"`` instead raises ``ValueError`` naming the class and the
    cases that lack it (the official code fails there with a ``KeyError``). ``ValueError`` when a class is held
    by fewer than 2 cases, when there are fewer than 2 cases, on NaN/Inf features, mismatched lengths or negative ids.
    ``official_average=True`` replaces the mean over classes of means over pairs by the expression of the
    official ``main.py`` (module docstring): acc = 0; for each class in id order: acc += S_k;
    acc += acc / (L_k^2 / 2) / K, with S_k the sum of the distances over pairs, L_k the cases holding k and K
    the number of classes. Invariant to the order of the cases. Reference: Yang et al., MICCAI 2023 [S].
    """
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
    if absent not in ("skip", "error"):
        raise ValueError(f"absent must be 'skip' or 'error', got {absent!r}")
    lam = (0.0 if distance == "wasserstein" else 0.1) if shrinkage is None else float(shrinkage)
    eps_ = (0.0 if distance == "wasserstein" else 1e-6) if eps is None else float(eps)
    if not (0.0 <= lam <= 1.0) or eps_ < 0:
        raise ValueError(f"shrinkage must be in [0, 1] and eps >= 0, got {lam}, {eps_}")
    X = _check_matrix(features, "features", torch.float64)
    y = _ids(labels, "labels", X.shape[0], X.device)
    c = _ids(cases, "cases", X.shape[0], X.device)
    n_cases = int(torch.unique(c).numel())
    if n_cases < 2:
        raise ValueError(f"class_consistency compares cases and needs at least 2 cases, got {n_cases}")
    classes = torch.unique(y).tolist()
    sums, pairs, holders = [], [], []
    for k in classes:
        sel = torch.nonzero(y == k).flatten()
        ck = c[sel]
        order = torch.argsort(ck, stable=True)
        sel, ck = sel[order], ck[order]
        ids, counts = torch.unique_consecutive(ck, return_counts=True)
        ok = counts >= 2
        if absent == "error" and int(ok.sum()) < n_cases:
            lacking = sorted(set(torch.unique(c).tolist()) - set(ids[ok].tolist()))
            raise ValueError(f"class {k} is absent (fewer than 2 sampled pixels) from case(s) {lacking[:10]}"
                             f"{' ...' if len(lacking) > 10 else ''}; absent='skip' averages it over the cases "
                             "that hold it")
        if int(ok.sum()) < 2:
            held = ids[ok].tolist()
            raise ValueError(
                f"class {k} is present (with >= 2 sampled pixels) in only {len(held)} case(s) {held[:10]}; class "
                "consistency compares a class across cases: drop the class or sample more cases")
        keep = ok[torch.repeat_interleave(torch.arange(len(ids), device=X.device), counts)]
        d = _class_distances(X[sel[keep]], counts[ok], distance, lam, eps_, squared, k)
        sums.append(d.sum())
        pairs.append(d.numel())
        holders.append(int(ok.sum()))
    if official_average:
        K = len(classes)
        acc = torch.zeros((), dtype=torch.float64, device=X.device)
        for s, L in zip(sums, holders):
            acc = acc + s
            acc = acc + acc / (L * L / 2) / K
        value = acc
    else:
        value = torch.stack([s / p for s, p in zip(sums, pairs)]).mean()
    return finite_float(value, "class_consistency")


def feature_variety(features, cases, *, normalize: bool = True, eps: float = 1e-3) -> float:
    """Feature variety as a hyperspherical energy: lower = the cases spread more uniformly = more variety.

    ``features`` (G, D) globally sampled pixel features, ``cases`` (G,) their case ids. Each case is summarised
    by the mean of its rows, L2-normalised onto the unit sphere (``normalize=False``: raw means, as the official
    ``cal_variety`` input); the energy is the mean over case pairs i < j of 1 / sqrt(||f_i - f_j||^2 + eps)
    (eps = 1e-3 as officially; it keeps coincident cases finite). With normalisation it lies in
    [1 / sqrt(4 + eps), 1 / sqrt(eps)]. Float64 on the features' device. ``ValueError`` for fewer than 2 cases,
    a case whose mean feature is the zero vector (no direction on the sphere), NaN/Inf, mismatched lengths.
    Reference: Yang et al., MICCAI 2023 [S]; hyperspherical energy: Liu et al., NeurIPS 2018.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    X = _check_matrix(features, "global features", torch.float64)
    c = _ids(cases, "global cases", X.shape[0], X.device)
    ids, inv, cnt = torch.unique(c, return_inverse=True, return_counts=True)
    n = ids.numel()
    if n < 2:
        raise ValueError(f"feature_variety compares cases and needs at least 2 cases, got {n}")
    f = torch.zeros(n, X.shape[1], dtype=X.dtype, device=X.device).index_add_(0, inv, X) / cnt[:, None]
    if normalize:
        norm = torch.linalg.vector_norm(f, dim=1)
        if bool((norm == 0).any()):
            bad = ids[norm == 0].tolist()[:10]
            raise ValueError(f"cases {bad} have an all-zero mean feature: no direction on the unit sphere")
        f = f / norm[:, None]
    sq = f.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (f @ f.T)).clamp_min(0)
    iu = torch.triu_indices(n, n, 1, device=X.device)
    e = 1.0 / torch.sqrt(d2[iu[0], iu[1]] + eps)
    if not bool(torch.isfinite(e).all()):
        raise ValueError("two cases have identical mean features and eps = 0: the energy is infinite")
    return finite_float(e.mean(), "feature_variety")


class CCFVParts(NamedTuple):
    """CC-FV parts of one decoder layer: ``cc`` class consistency (lower = better), ``fv`` feature variety as a
    hyperspherical energy (lower = more uniform = better). Combine layers with :func:`ccfv`."""
    cc: float
    fv: float


def unit_rows(features, name: str = "features") -> torch.Tensor:
    """Every row L2-normalised onto the unit sphere (float64, the input's device); all-zero rows stay zero."""
    X = _check_matrix(features, name, torch.float64)
    norm = torch.linalg.vector_norm(X, dim=1, keepdim=True)
    return X / torch.where(norm == 0, torch.ones_like(norm), norm)


def ccfv_parts(features, labels, cases, global_features, global_cases, *, distance: str = "wasserstein",
               official_average: bool = False, shrinkage: float | None = None, eps: float | None = None,
               squared: bool = False, normalize: bool = True, unit_features: bool = False,
               absent: str = "skip") -> CCFVParts:
    """CC-FV parts of one layer: ``CCFVParts(cc, fv)``.

    ``features``/``labels``/``cases``: the class samples (``gather_pixels(..., which="class")`` with
    ``sample.label``, ``sample.case``); ``global_features``/``global_cases``: the global samples
    (``which="global"``, ``sample.global_case``). ``cc`` = :func:`class_consistency` (``distance``,
    ``official_average``, ``shrinkage``, ``eps``, ``squared``, ``absent``), ``fv`` = :func:`feature_variety`
    (``normalize``). Both lower = better; :func:`ccfv` turns the parts of all layers into one score.
    ``unit_features=True`` (ours, not in [S]) first puts every sampled pixel feature on the unit sphere, for CC
    as well as FV. The 2-Wasserstein distance grows with the scale of the features while the energy of
    normalised means does not, so with the default a layer whose features are simply smaller (an untrained
    network's often are, by one to two orders of magnitude) looks more consistent; on the unit sphere the
    score no longer sees the scale.
    Reference: Yang et al., MICCAI 2023 [S].
    """
    if unit_features:
        features = unit_rows(features, "features")
        global_features = unit_rows(global_features, "global features")
    cc = class_consistency(features, labels, cases, distance=distance, shrinkage=shrinkage, eps=eps,
                           squared=squared, official_average=official_average, absent=absent)
    fv = feature_variety(global_features, global_cases, normalize=normalize)
    return CCFVParts(cc, fv)


def _layer_parts(parts_by_layer) -> list[tuple[str, float, float]]:
    if isinstance(parts_by_layer, CCFVParts):
        items = [("0", parts_by_layer)]
    elif isinstance(parts_by_layer, Mapping):
        items = [(str(k), v) for k, v in parts_by_layer.items()]
    else:
        items = [(str(i), v) for i, v in enumerate(parts_by_layer)]
    if not items:
        raise ValueError("ccfv needs the parts of at least one layer")
    out = []
    for name, p in items:
        if isinstance(p, Mapping):
            vals = (p["cc"], p["fv"])
        elif hasattr(p, "_fields"):
            vals = (p.cc, p.fv)
        else:
            vals = tuple(p)
            if len(vals) != 2:
                raise ValueError(f"ccfv: parts of layer {name} must be (cc, fv), got {len(vals)} values")
        cc, fv = (float(v) for v in vals)
        for what, v in (("cc", cc), ("fv", fv)):
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"ccfv: {what} of layer {name} must be a finite positive number, got {v}")
        out.append((name, cc, fv))
    return out


def ccfv(parts_by_layer, *, use_cc: bool = True, use_fv: bool = True, official_direction: bool = False) -> float:
    """CC-FV score of one model from the parts of its decoder layers; higher = better.

    ``parts_by_layer``: dict layer -> :class:`CCFVParts` (or a dict with ``cc``/``fv``, or a (cc, fv) pair), or
    a list of them. Score = sum over layers of ``log(1 / fv) - log(cc)`` = ``-sum log(fv * cc)``: low class
    distance and low energy (high variety) both raise it. ``use_cc=False`` / ``use_fv=False`` drop that term
    (the ablations: variety only, consistency only). ``official_direction=True`` uses the official
    ``main.py`` combination ``sum log(fv / cc)``, where the energy enters with a plus sign (it rewards case
    features bunched together; see the module docstring). Reference: Yang et al., MICCAI 2023 [S].
    """
    if not (use_cc or use_fv):
        raise ValueError("ccfv: use_cc and use_fv cannot both be False")
    total = 0.0
    for _, cc, fv in _layer_parts(parts_by_layer):
        if use_cc:
            total -= math.log(cc)
        if use_fv:
            total += math.log(fv) if official_direction else -math.log(fv)
    return float(total)

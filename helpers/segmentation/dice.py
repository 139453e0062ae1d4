"""The segmentation loss (Dice + cross-entropy) and Dice per class, as the bank trains and tests with them
(PROTOCOL.md section 7; :mod:`helpers.segmentation.training` runs them).

Loss
    ``ce_weight * CE + dice_weight * (1 - soft Dice)``. CE is the pixel-wise cross-entropy over all classes
    (background included), averaged over pixels. Soft Dice is computed per foreground class ``k >= 1`` over the
    whole batch, ``(2 sum p_k g_k + smooth) / (sum p_k + sum g_k + smooth)`` with ``p`` the softmax and ``g``
    the one-hot mask, sums over every pixel of every image of the batch, ``smooth = 1``; it is averaged over the
    foreground classes. (A class absent from the batch then pushes its probabilities towards 0.)

Dice on evaluation splits (:func:`dice_per_class`)
    Hard Dice of the argmax prediction, per case (image) and foreground class:
    ``2 |P_k & G_k| / (|P_k| + |G_k|)``. A case where class ``k`` is absent from both the prediction and the
    ground truth is **excluded** from class ``k``'s mean (it has no Dice); a case where it is absent from the
    ground truth but predicted scores 0. Dice per class is the mean over the cases that have one; the mean
    foreground Dice (``test_dice``) is the mean of the per-class values (classes with no defined value
    skipped). Evaluation runs at the profile's ``image_size`` (masks resized nearest).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0, ce_weight: float = 1.0,
                 smooth: float = 1.0) -> torch.Tensor:
    """``ce_weight * CE + dice_weight * (1 - soft Dice)`` (module docstring). ``logits`` (B, K, H, W),
    ``target`` (B, H, W) int64 class ids; K >= 2."""
    logits = logits.float()
    k = logits.shape[1]
    if k < 2:
        raise ValueError("segmentation needs at least 2 classes (background and one foreground)")
    loss = logits.new_zeros(())
    if ce_weight:
        loss = loss + ce_weight * F.cross_entropy(logits, target)
    if dice_weight:
        p = torch.softmax(logits, 1)[:, 1:]
        g = F.one_hot(target, k).permute(0, 3, 1, 2)[:, 1:].to(p.dtype)
        inter = (p * g).sum((0, 2, 3))
        denom = p.sum((0, 2, 3)) + g.sum((0, 2, 3))
        dice = (2 * inter + smooth) / (denom + smooth)
        loss = loss + dice_weight * (1 - dice.mean())
    return loss


def _as_tensor(a) -> torch.Tensor:
    return a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))


def dice_counts(pred, mask, n_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per case and class: ``|P & G|``, ``|P|``, ``|G|`` as int64 tensors (N, n_classes).

    ``pred`` and ``mask`` are label maps (N, H, W) (or one map (H, W)) of class ids, tensors or arrays."""
    pred, mask = _as_tensor(pred).long(), _as_tensor(mask).long().to(_as_tensor(pred).device)
    if pred.shape != mask.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and mask {tuple(mask.shape)} differ in shape")
    if pred.ndim == 2:
        pred, mask = pred[None], mask[None]
    n = len(pred)
    p1 = F.one_hot(pred.reshape(n, -1).clamp(0, n_classes - 1), n_classes)
    g1 = F.one_hot(mask.reshape(n, -1).clamp(0, n_classes - 1), n_classes)
    return (p1 & g1).sum(1), p1.sum(1), g1.sum(1)


def dice_from_counts(inter, psum, gsum) -> np.ndarray:
    """Per-case Dice of the foreground classes (N, K-1) float64; NaN where the class is absent from both."""
    inter, psum, gsum = (np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64)[:, 1:]
                         for t in (inter, psum, gsum))
    denom = psum + gsum
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * inter / np.where(denom > 0, denom, 1), np.nan)


def dice_per_case(pred, mask, n_classes: int) -> np.ndarray:
    """(N, n_classes - 1): Dice per case and foreground class, NaN where absent from prediction and mask."""
    return dice_from_counts(*dice_counts(pred, mask, n_classes))


def quiet_nanmean(a, axis=None):
    """``np.nanmean`` without its warning for an all-NaN slice (NaN there, as intended: no Dice defined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def dice_per_class(pred, mask, n_classes: int) -> np.ndarray:
    """Dice per foreground class (n_classes - 1,): per-case Dice averaged over the cases where the class is
    in the prediction or the ground truth (module docstring); NaN when it is in neither for every case."""
    per_case = dice_per_case(pred, mask, n_classes)
    return np.asarray(quiet_nanmean(per_case, 0), dtype=np.float64).reshape(-1)


def mean_foreground_dice(per_class) -> float:
    """Mean of the per-class Dice values that are defined (NaN when none is)."""
    per_class = np.asarray(per_class, dtype=np.float64)
    return float(quiet_nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")

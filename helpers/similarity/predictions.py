"""Prediction similarity: error agreement of two classifiers on the same test images, with the correct
independent-errors baseline, [R]'s defective one and Cohen's kappa."""
from __future__ import annotations

import torch

from helpers.metrics._common import to_tensor


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

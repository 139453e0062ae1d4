"""MedMNIST's evaluation: the task kinds, AUC and ACC as ``medmnist.evaluator`` computes them, and the AUC over
the classes present in a small validation subset (PROTOCOL.md section 4)."""
from __future__ import annotations

import numpy as np
import torch


MULTILABEL, BINARY, MULTICLASS = "multi-label, binary-class", "binary-class", "multi-class"


def task_kind(task: str) -> str:
    """``multilabel``, ``binary`` or ``multiclass`` (ordinal regression is scored as multi-class)."""
    if task.startswith("multi-label"):
        return "multilabel"
    if task == BINARY:
        return "binary"
    return "multiclass"


def medmnist_auc(y_true, y_score, task: str) -> float:
    """MedMNIST's AUC: multi-label = mean per-label AUC, binary = AUC of the positive class score (last
    column), otherwise mean one-vs-rest AUC over the score columns. ``y_score`` are probabilities."""
    from sklearn.metrics import roc_auc_score

    y_true, y_score = np.asarray(y_true).squeeze(), np.asarray(y_score, dtype=np.float64).squeeze()
    kind = task_kind(task)
    if kind == "multilabel":
        return float(np.mean([roc_auc_score(y_true[:, i], y_score[:, i]) for i in range(y_score.shape[1])]))
    if kind == "binary":
        return float(roc_auc_score(y_true, y_score[:, -1] if y_score.ndim == 2 else y_score))
    return float(np.mean([roc_auc_score((y_true == i).astype(float), y_score[:, i])
                          for i in range(y_score.shape[1])]))


def medmnist_acc(y_true, y_score, task: str, threshold: float = 0.5) -> float:
    """MedMNIST's ACC: threshold 0.5 per label (multi-label, averaged over labels) or on the positive class
    score (binary), argmax otherwise."""
    y_true, y_score = np.asarray(y_true).squeeze(), np.asarray(y_score, dtype=np.float64).squeeze()
    kind = task_kind(task)
    if kind == "multilabel":
        return float(np.mean([(y_true[:, i] == (y_score[:, i] > threshold)).mean() for i in range(y_true.shape[1])]))
    if kind == "binary":
        s = y_score[:, -1] if y_score.ndim == 2 else y_score
        return float((y_true == (s > threshold)).mean())
    return float((y_true == y_score.argmax(-1)).mean())


def probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, -1)


def auc_over_present(y_true, y_score, task: str) -> tuple[float, int, int]:
    """``(auc, used, total)``: :func:`medmnist_auc` averaged over the classes (labels) present in ``y_true``.

    A small validation subset can miss a class (dermamnist's rare classes, about 1 fold in 6): MedMNIST's
    multi-class AUC is then undefined (scikit-learn raises) and a NaN AUC would freeze early stopping at epoch 1.
    Multi-class: the one-vs-rest AUC of each class that occurs in ``y_true`` (positives and negatives both
    present), averaged; multi-label: the labels with both values present (as MedMNIST's per-label mean). Binary:
    both classes are needed, else NaN. ``used < total`` records that classes were left out.
    """
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    kind = task_kind(task)
    if kind == "multilabel":
        ok = [i for i in range(y_true.shape[1]) if 0 < y_true[:, i].sum() < len(y_true)]
        if not ok:
            return float("nan"), 0, y_true.shape[1]
        return medmnist_auc(y_true[:, ok], y_score[:, ok], task), len(ok), y_true.shape[1]
    y = y_true.reshape(-1)
    if kind == "binary":
        if len(np.unique(y)) < 2:
            return float("nan"), len(np.unique(y)), 2
        return medmnist_auc(y, y_score, task), 2, 2
    n_classes = y_score.shape[1]
    present = [c for c in range(n_classes) if 0 < (y == c).sum() < len(y)]
    if not present:
        return float("nan"), 0, n_classes
    auc = float(np.mean([roc_auc_score((y == c).astype(float), y_score[:, c]) for c in present]))
    return auc, len(present), n_classes


def safe_auc(y_true, y_score, task: str) -> float:
    """:func:`medmnist_auc` over the classes present in ``y_true`` (:func:`auc_over_present`), NaN where no
    class has both positives and negatives."""
    return auc_over_present(y_true, y_score, task)[0]

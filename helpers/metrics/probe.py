"""Cheap cross-validated linear-probe baseline (torch logistic regression)."""
from __future__ import annotations

import torch

from ._common import finite_float, prepare

__all__ = ["linear_probe"]


def _folds(y: torch.Tensor, n_splits: int, seed: int, multilabel: bool, groups=None) -> torch.Tensor:
    """Fold id per sample: stratified by class (by the first positive label for multi-label), seeded. With
    ``groups`` (one id per sample: the slices of one volume, the images of one patient) whole groups are
    assigned, stratified by each group's most frequent class, so a group never spans two folds."""
    g = torch.Generator().manual_seed(seed)
    yc = y.cpu()
    key = yc.argmax(1) if multilabel else yc
    fold = torch.empty(yc.shape[0], dtype=torch.int64)
    if groups is not None:
        import numpy as np

        gid = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
        if gid.shape[0] != yc.shape[0]:
            raise ValueError(f"groups has {gid.shape[0]} entries for {yc.shape[0]} samples")
        kk = key.numpy()
        n_groups = int(gid.max()) + 1
        gkey = np.array([np.bincount(kk[gid == j]).argmax() for j in range(n_groups)])
        gfold = np.empty(n_groups, dtype=np.int64)
        offset = 0
        for c in np.unique(gkey):
            members = torch.as_tensor(np.flatnonzero(gkey == c))
            members = members[torch.randperm(members.numel(), generator=g)].numpy()
            gfold[members] = (np.arange(members.size) + offset) % n_splits
            offset += members.size
        fold[:] = torch.as_tensor(gfold[gid])
        return fold.to(y.device)
    offset = 0
    for c in torch.unique(key):
        idx = torch.nonzero(key == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        fold[idx] = (torch.arange(idx.numel()) + offset) % n_splits
        offset += idx.numel()
    return fold.to(y.device)


def linear_probe(features, labels, *, n_splits: int = 5, l2: float = 1.0, max_iter: int = 30,
                 random_state: int = 0, per_sample: bool = False, groups=None):
    """Cross-validated accuracy of an L2-regularised logistic regression on standardised frozen features.

    A cheap supervised baseline for the metrics: ``n_splits``-fold (default 5) stratified, seeded folds;
    multinomial logistic regression with scikit-learn's objective (``C = 1/l2``: sum of losses + ||W||²/(2C)),
    fitted full-batch by torch L-BFGS (``max_iter`` 30, a cheap, slightly early-stopped fit) in float32 on the
    features' device. Returns the mean held-out accuracy; higher is better. Multi-label (N, L): one logistic
    output per label (BCE), score = mean per-label accuracy. Reference: the linear-evaluation protocol, e.g.
    Kornblith et al., *Do Better ImageNet Models Transfer Better?*, CVPR 2019.
    Scale: the same (exact) form at every N, no approximation: each L-BFGS evaluation is O(N D C) time and
    O(N D) memory (no N x N), at most ~1.25 ``max_iter`` evaluations per fold; N = 100k x 512 takes about
    20 s on one CPU thread (``benchmarks/results/metrics_cpu.txt``).
    ``per_sample=True`` returns the per-sample terms instead, a float64 tensor (N,) of each sample's held-out
    correctness (per-label accuracy for multi-label; NaN for a sample whose fold was too small to fit),
    whose mean over the finite entries is the score (for bootstrap intervals, e.g. :mod:`helpers.rank`).
    ``groups``: one id per sample (the slices of one volume, the images of one patient); a group is never
    split between folds. The folds depend on the order of the samples (call it with a canonical order, as
    :mod:`helpers.rank` does, for results that do not depend on how the files were listed).
    """
    p = prepare(features, labels, metric="linear_probe", multilabel_ok=True, allow_constant=True)
    X = p.X.to(torch.float32)
    y = p.y
    n_splits = max(2, min(n_splits, p.N))
    fold = _folds(y, n_splits, random_state, p.multilabel, groups)
    correct = 0.0
    total = 0
    terms = torch.full((p.N,), float("nan"), dtype=torch.float64, device=X.device)
    for f in range(n_splits):
        te = fold == f
        tr = ~te
        if int(te.sum()) == 0 or int(tr.sum()) < 2:
            continue
        Xtr, Xte = X[tr], X[te]
        mu = Xtr.mean(0)
        sd = Xtr.std(0, unbiased=False)
        sd = torch.where(sd > 0, sd, torch.ones_like(sd))
        Xtr = (Xtr - mu) / sd
        Xte = (Xte - mu) / sd
        out = p.C
        W = torch.zeros(X.shape[1], out, dtype=X.dtype, device=X.device, requires_grad=True)
        b = torch.zeros(out, dtype=X.dtype, device=X.device, requires_grad=True)
        ytr = y[tr]
        n = Xtr.shape[0]
        opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                                tolerance_change=1e-9, history_size=10, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            logits = Xtr @ W + b
            if p.multilabel:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, ytr.to(X.dtype),
                                                                           reduction="sum")
            else:
                loss = torch.nn.functional.cross_entropy(logits, ytr, reduction="sum")
            loss = (loss + 0.5 * l2 * (W * W).sum()) / n
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        with torch.no_grad():
            logits = Xte @ W + b
            if p.multilabel:
                hits = ((logits > 0).to(torch.float64) == y[te]).to(torch.float64).mean(1)
            else:
                hits = (logits.argmax(1) == y[te]).to(torch.float64)
            terms[te] = hits
            correct += float(hits.sum())
            total += int(te.sum())
    if per_sample:
        return terms
    return finite_float(correct / total, "linear_probe")

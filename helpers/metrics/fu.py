"""FU: feature (gradient) utilisation of two early layers under a triplet loss on the embeddings [D]."""
from __future__ import annotations

import contextlib
import re

import numpy as np
import torch

from ..threads import fair_threads
from ._common import finite_float, to_tensor

__all__ = ["fu", "resolve_layer", "cudnn_settings"]


def resolve_layer(model: torch.nn.Module, layer) -> torch.nn.Module:
    """Return the sub-module named ``layer`` (or ``layer`` itself if it is a module).

    Accepts dotted names (``"conv1"``, ``"layer1.0.conv1"``) and the bracket form of PROTOCOL.md
    (``"features[0][0]"``, ``"features[1][0].block[0][0]"``), which are the same path."""
    if isinstance(layer, torch.nn.Module):
        return layer
    if not isinstance(layer, str) or not layer:
        raise ValueError(f"layer must be a module or a dotted name, got {layer!r}")
    path = re.sub(r"\[(\d+)\]", r".\1", layer).strip(".")
    try:
        return model.get_submodule(path)
    except AttributeError as exc:
        raise ValueError(f"model has no sub-module {layer!r} ({exc})") from exc


@contextlib.contextmanager
def cudnn_settings(enabled: bool | None = None, deterministic: bool | None = None, benchmark: bool | None = None):
    """Temporarily set ``torch.backends.cudnn`` flags; the previous values are restored on exit."""
    cd = torch.backends.cudnn
    old = (cd.enabled, cd.deterministic, cd.benchmark)
    try:
        if enabled is not None:
            cd.enabled = enabled
        if deterministic is not None:
            cd.deterministic = deterministic
        if benchmark is not None:
            cd.benchmark = benchmark
        yield
    finally:
        cd.enabled, cd.deterministic, cd.benchmark = old


@fair_threads()
def fu(model: torch.nn.Module, first_layer, second_layer, images, labels, *, n_batches: int = 6,
       device=None, cudnn_enabled: bool = False) -> float:
    """FU: ratio of the gradient norms of two early layers under a metric-learning loss on the embeddings.

    ``model`` maps images to penultimate embeddings (the classification head already removed, e.g.
    ``model.fc = nn.Identity()``). The images are split into consecutive batches of floor(N / ``n_batches``) in
    the given order (a smaller remainder batch is kept, like a DataLoader with ``drop_last=False``); for each
    batch the pytorch-metric-learning ``TripletMarginLoss()`` (margin 0.05, all triplets, mean over non-zero
    triplet losses) of the embeddings is back-propagated and the L2 norms of the weight gradients of
    ``first_layer`` and ``second_layer`` are recorded. Score = mean second-layer norm / mean first-layer norm
    (a batch without a valid triplet contributes zero to both means). Which direction is better is the
    empirical finding of [D]: it is used as "higher = better" in the LP x FU product.
    Reference: Juodelyte et al., *On dataset transferability in medical image classification*, 2024 ([D]).
    Layers: modules or names (``"conv1"``, ``"layer1.0.conv1"``, ``"features[0][0]"``); see PROTOCOL.md
    section 3 for the pair used per architecture.
    Side effects avoided: the model is run in eval mode and its previous train/eval mode restored; gradients
    are taken with ``torch.autograd.grad`` so no ``.grad`` is left on the model; ``requires_grad`` flags are
    restored; cuDNN flags (the reference disables cuDNN globally) are changed only inside this call, which runs
    in IEEE float32 (TF32 off, :func:`helpers.models.full_precision`).
    """
    from pytorch_metric_learning.losses import TripletMarginLoss

    from ..models import full_precision

    l1 = resolve_layer(model, first_layer)
    l2 = resolve_layer(model, second_layer)
    w1, w2 = getattr(l1, "weight", None), getattr(l2, "weight", None)
    if not isinstance(w1, torch.Tensor) or not isinstance(w2, torch.Tensor):
        raise ValueError("both layers must have a .weight parameter")
    if device is None:
        device = w1.device
    x = to_tensor(images, "images")
    y = to_tensor(labels, "labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError("fu needs one class label per image (multi-label targets are not supported)")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"images and labels have different lengths: {x.shape[0]} != {y.shape[0]}")
    if not x.dtype.is_floating_point:
        x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("images contain NaN or Inf values")
    N = x.shape[0]
    bs = N // n_batches
    if bs < 2:
        raise ValueError(f"fu needs at least 2 images per batch: N={N} with {n_batches} batches")
    loss_fn = TripletMarginLoss()
    was_training = model.training
    flags = [(prm, prm.requires_grad) for prm in model.parameters()]
    n1, n2 = [], []
    try:
        model.eval()
        for prm, _ in flags:
            prm.requires_grad_(False)
        w1.requires_grad_(True)
        w2.requires_grad_(True)
        with cudnn_settings(enabled=cudnn_enabled), full_precision(), torch.enable_grad():
            for s in range(0, N, bs):
                xb = x[s:s + bs].to(device=device, dtype=w1.dtype)
                yb = y[s:s + bs].to(device)
                emb = model(xb)
                if emb.ndim != 2:
                    emb = emb.flatten(1)
                loss = loss_fn(emb, yb)
                if not loss.requires_grad:
                    n1.append(0.0)
                    n2.append(0.0)
                    continue
                g1, g2 = torch.autograd.grad(loss, [w1, w2], allow_unused=True)
                n1.append(0.0 if g1 is None else float(torch.linalg.vector_norm(g1)))
                n2.append(0.0 if g2 is None else float(torch.linalg.vector_norm(g2)))
    finally:
        for prm, req in flags:
            prm.requires_grad_(req)
        model.train(was_training)
    m1 = float(np.mean(n1))
    if m1 == 0:
        raise ValueError("fu: the first layer received no gradient (no valid triplet in any batch?)")
    return finite_float(float(np.mean(n2)) / m1, "fu")

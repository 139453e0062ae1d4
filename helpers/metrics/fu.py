"""FU: feature (gradient) utilisation of two early layers under a triplet loss on the embeddings [D]."""
from __future__ import annotations

import contextlib
import re

import numpy as np
import torch

from ..models import full_precision
from ._common import finite_float, to_tensor

__all__ = ["fu", "fu_batches", "triplet_margin_grad", "BATCHING", "resolve_layer", "cudnn_settings"]


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


BATCHING = ("stratified", "given")


def fu_batches(labels, n_batches: int = 6, *, batching: str = "stratified", seed: int = 0) -> list[torch.Tensor]:
    """The index sets (CPU int64 tensors) of FU's batches, in the order :func:`fu` processes them.

    ``"given"`` (the reference of [D]): consecutive batches of floor(N / ``n_batches``) in the given order, a
    smaller remainder batch kept (N = 200: six of 33 and one of 2). ``"stratified"``: the same consecutive
    batching of a seeded, class-stratified order: a ``torch.Generator`` seeded with ``seed``; for each class in
    sorted label order, ``randperm`` (with that generator) of its indices taken in the given order; the classes
    then interleaved evenly (the i-th of the n_c members of class c gets key (2i + 1) / (2 n_c); stable sort by
    (key, class)), so every full batch holds each class in proportion to its count (up to rounding)."""
    if batching not in BATCHING:
        raise ValueError(f"batching must be one of {', '.join(map(repr, BATCHING))}; got {batching!r}")
    y = to_tensor(labels, "labels").cpu()
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError("fu needs one class label per image (multi-label targets are not supported)")
    if isinstance(n_batches, bool) or not isinstance(n_batches, (int, np.integer)) or n_batches < 1:
        raise ValueError(f"n_batches must be a positive integer, got {n_batches!r}")
    N = int(y.shape[0])
    bs = N // int(n_batches)
    if bs < 2:
        raise ValueError(f"fu needs at least 2 images per batch: N={N} with {n_batches} batches")
    if batching == "given":
        order = torch.arange(N)
    else:
        g = torch.Generator().manual_seed(int(seed))
        members, keys = [], []
        for c in torch.unique(y).tolist():  # sorted
            idx = torch.nonzero(y == c).flatten()
            members.append(idx[torch.randperm(len(idx), generator=g)])
            n_c = len(idx)
            keys.append((2 * torch.arange(n_c, dtype=torch.float64) + 1) / (2 * n_c))
        # classes are concatenated in sorted order, so a stable sort by key breaks ties by class
        order = torch.cat(members)[torch.sort(torch.cat(keys), stable=True).indices]
    return [order[s:s + bs] for s in range(0, N, bs)]


def _image_loader(images, n: int):
    """``index -> images`` for a tensor/array (validated once, in chunks) or a user callable (validated per call)."""
    if callable(images) and not isinstance(images, (torch.Tensor, np.ndarray)):
        def load(index):
            x = images(index)
            if not isinstance(x, torch.Tensor):
                x = to_tensor(x, "images")
            return _check_images(x, len(index))
        return load
    x = to_tensor(images, "images")
    if x.ndim < 2:
        raise ValueError(f"images must be an (N, ...) array, got shape {tuple(x.shape)}")
    if x.shape[0] != n:
        raise ValueError(f"images and labels have different lengths: {x.shape[0]} != {n}")
    for s in range(0, n, 64):  # chunked: no N-sized temporary
        _check_images(x[s:s + 64], min(64, n - s))
    return lambda index: x.index_select(0, index.to(x.device))


def _check_images(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.ndim < 2 or x.shape[0] != n:
        raise ValueError(f"the image loader returned shape {tuple(x.shape)} for {n} indices; expected ({n}, ...)")
    if not (x.dtype.is_floating_point or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32,
                                                      torch.int64)):
        raise ValueError(f"images: expected numbers, got dtype {x.dtype}")
    if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
        raise ValueError("images contain NaN or Inf values")
    return x


def _embed(model, x):
    emb = model(x)
    return emb if emb.ndim == 2 else emb.flatten(1)


def fu(model: torch.nn.Module, first_layer, second_layer, images, labels, *, n_batches: int = 6,
       device=None, cudnn_enabled: bool = False, batching: str = "stratified", seed: int = 0,
       micro_batch: int | None = 16) -> float:
    """FU: ratio of the gradient norms of two early layers under a metric-learning loss on the embeddings.

    ``model`` maps images to penultimate embeddings (the classification head already removed, e.g.
    ``model.fc = nn.Identity()``). The N images are split into batches of floor(N / ``n_batches``) (see
    ``batching``; a smaller remainder batch is kept, like a DataLoader with ``drop_last=False``); for each
    batch the gradient of the pytorch-metric-learning ``TripletMarginLoss()`` (margin 0.05, all triplets, mean
    over non-zero triplet losses) of the batch's embeddings is taken and the L2 norms of the weight gradients of
    ``first_layer`` and ``second_layer`` are recorded. Score = mean second-layer norm / mean first-layer norm
    (a batch without a valid triplet contributes zero to both means). Which direction is better is the
    empirical finding of [D]: it is used as "higher = better" in the LP x FU product.
    Reference: Juodelyte et al., *On dataset transferability in medical image classification*, 2024 ([D]).
    Layers: modules or names (``"conv1"``, ``"layer1.0.conv1"``, ``"features[0][0]"``); see PROTOCOL.md
    section 3 for the pair used per architecture.

    ``images``: an (N, C, H, W) tensor or array, or a callable ``images(index) -> tensor`` that returns the
    (len(index), C, H, W) images of the int64 CPU index tensor ``index`` (e.g. ``lambda i: ds.batch(i)[0]``),
    so the caller never materialises all N images (2,000 at 224 px are 1.2 GB of float32). The callable must
    return the same images for the same indices (the micro-batched path asks for each image twice); N is
    ``len(labels)``. Images are moved to ``device`` (default: the first layer's) in that layer's dtype.

    ``batching``: ``"given"`` is the reference of [D]: consecutive batches in the given order. The default
    ``"stratified"`` batches a seeded class-stratified order instead (:func:`fu_batches`): on a target stored
    sorted by class, consecutive batches hold one class each, have no valid triplet and FU then fails (no
    gradient at all) or is computed from the few mixed batches only. With ``"stratified"`` the result
    depends on the input order only through the seeded permutation (same order and ``seed``, same answer;
    another ``seed``, a different draw of the batches): callers that want a score invariant to the order of
    their images pass them in a canonical order (``helpers.rank`` does).

    ``micro_batch`` (default 16; ``None``: the single-pass path, one forward/backward of the whole batch, kept
    for checking): memory bounded in N. Per batch, pass 1 computes the embeddings in micro-batches without
    gradients; the loss's gradient with respect to the (B, D) embeddings is taken; pass 2 re-runs each
    micro-batch with gradients and back-propagates its rows of that gradient into the two layers' weights
    (``autograd.grad(emb_mb, [w1, w2], grad_outputs=dL/demb[mb])``), summed over micro-batches. This is the
    chain rule, so it equals the full-batch gradient (up to float summation order) for any loss of the batch's
    embeddings, because in eval mode each image's embedding depends on that image alone: batch norm uses its
    running statistics, not the batch's (in train mode it would not be exact, which is one more reason FU runs
    in eval mode). Micro-batches whose rows of dL/demb are all zero (images in no violating triplet) are
    skipped (exact). The loss's gradient comes from :func:`triplet_margin_grad`: the same loss as the
    library's without its (N / n_batches)^3-sized triplet tensors (0.45 GB at N = 2,000 with two balanced
    classes, so ~50 GB at N = 10,000); the single-pass path keeps the library's loss. Peak memory then follows
    ``micro_batch`` (the activations of one micro-batch) and the (N / n_batches)^2 distance matrix, not N; the
    cost is one extra forward pass. 16 keeps a random ResNet-50 at 224 px under 4 GB on a CPU (one fwd+bwd
    of 32 images alone peaked at 3.9 GB); see ``benchmarks/fu_memory.py``.

    Side effects avoided: the model is run in eval mode and its previous train/eval mode restored; gradients
    are taken with ``torch.autograd.grad`` so no ``.grad`` is left on the model; ``requires_grad`` flags are
    restored; cuDNN flags (the reference disables cuDNN globally) are changed only inside this call, which runs
    in IEEE float32 (TF32 off, :func:`helpers.models.full_precision`).
    """
    from pytorch_metric_learning.losses import TripletMarginLoss

    l1 = resolve_layer(model, first_layer)
    l2 = resolve_layer(model, second_layer)
    w1, w2 = getattr(l1, "weight", None), getattr(l2, "weight", None)
    if not isinstance(w1, torch.Tensor) or not isinstance(w2, torch.Tensor):
        raise ValueError("both layers must have a .weight parameter")
    if micro_batch is not None and (isinstance(micro_batch, bool) or not isinstance(micro_batch, (int, np.integer))
                                    or micro_batch < 1):
        raise ValueError(f"micro_batch must be a positive integer or None, got {micro_batch!r}")
    if device is None:
        device = w1.device
    y = to_tensor(labels, "labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError("fu needs one class label per image (multi-label targets are not supported)")
    y = y.cpu()
    batches = fu_batches(y, n_batches, batching=batching, seed=seed)
    raw = _image_loader(images, len(y))

    def load(index):
        return raw(index).to(device=device, dtype=w1.dtype)

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
            for index in batches:
                yb = y.index_select(0, index).to(device)
                if micro_batch is None:
                    g1, g2 = _grads_single(model, loss_fn, load(index), yb, w1, w2)
                else:
                    g1, g2 = _grads_micro(model, load, index, yb, w1, w2, int(micro_batch))
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


def _grads_single(model, loss_fn, xb, yb, w1, w2):
    """One forward/backward of the whole batch (the reference's way; memory grows with the batch)."""
    loss = loss_fn(_embed(model, xb), yb)
    if not loss.requires_grad:
        return None, None
    return torch.autograd.grad(loss, [w1, w2], allow_unused=True)


def _grads_micro(model, load, index, yb, w1, w2, mb):
    """The same gradients in two micro-batched passes (exact in eval mode; see :func:`fu`)."""
    with torch.no_grad():
        emb = torch.cat([_embed(model, load(index[s:s + mb])) for s in range(0, len(index), mb)])
    gemb = triplet_margin_grad(emb, yb)
    del emb
    if gemb is None:
        return None, None
    g1 = g2 = None
    for s in range(0, len(index), mb):
        ge = gemb[s:s + mb]
        if not bool(ge.any()):
            continue
        e = _embed(model, load(index[s:s + mb]))
        p1, p2 = torch.autograd.grad(e, [w1, w2], grad_outputs=ge, allow_unused=True)
        del e
        if p1 is not None:
            g1 = p1 if g1 is None else g1 + p1
        if p2 is not None:
            g2 = p2 if g2 is None else g2 + p2
    return g1, g2


def triplet_margin_grad(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.05,
                        chunk_elements: int = 1 << 24) -> torch.Tensor | None:
    """Gradient with respect to ``embeddings`` (B, D) of pytorch-metric-learning's ``TripletMarginLoss()`` with
    its defaults (L2-normalised embeddings, Euclidean distances from ``torch.cdist``, all triplets (a, p, n)
    with y_a = y_p, a != p, y_n != y_a, loss relu(d_ap - d_an + margin), mean over the triplets with a non-zero
    loss), or ``None`` where that gradient is zero (no triplet with a positive loss).

    The same computation as the library's (same distances, same float32 test of d_ap - d_an + margin > 0) but
    without its (B^3)-sized triplet tensors (3 int64 indices and more per triplet: 0.45 GB more peak memory
    at B = 333, N = 2,000, with two balanced classes, so ~50 GB at B = 1,666, N = 10,000): the triplets are
    counted in chunks of anchors of at most ``chunk_elements`` (anchor, positive, negative) entries, and the
    loss's gradient with respect to the distance matrix is (number of active triplets using each distance,
    + for d_ap, - for d_an) / total active, back-propagated through the distances. Memory
    O(B^2 + chunk_elements); time O(B^3) like the library's."""
    emb = embeddings.detach().requires_grad_(True)
    y = torch.as_tensor(labels, device=emb.device)
    B = emb.shape[0]
    if y.shape != (B,):
        raise ValueError(f"labels must have shape ({B},), got {tuple(y.shape)}")
    with torch.enable_grad():
        en = torch.nn.functional.normalize(emb, p=2, dim=1)
        mat = torch.cdist(en, en, p=2)
    d = mat.detach()
    same = y[:, None] == y[None, :]
    pos = same.clone()
    pos.fill_diagonal_(False)
    neg = ~same
    counts = torch.zeros_like(d)
    total = 0
    rows = max(1, int(chunk_elements) // max(B * B, 1))
    for s in range(0, B, rows):
        a = slice(s, s + rows)
        active = (d[a, :, None] - d[a, None, :] + margin > 0) & pos[a, :, None] & neg[a, None, :]
        per_ap = active.sum(2)
        counts[a] += per_ap
        counts[a] -= active.sum(1)
        total += int(per_ap.sum())
        del active
    if total == 0:
        return None
    (g,) = torch.autograd.grad(mat, emb, grad_outputs=counts / total)
    return g

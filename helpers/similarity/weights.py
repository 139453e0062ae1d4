"""Weight change: how far fine-tuning moved each conv / linear layer, and per stage (this project's extension;
[R] has no weight-space measure)."""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn as nn


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

"""Registry of the metrics: what each needs, its direction, reference and defaults; ``score`` dispatches."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from ..threads import fair_threads
from .ccfv import ccfv as _ccfv_fn, ccfv_parts as _ccfv_parts_fn
from .fu import fu as _fu_fn
from . import gmm, neighbours, pairwise, probe, setlevel

__all__ = ["MetricInfo", "REGISTRY", "list_metrics", "score"]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    fn: Callable
    inputs: tuple[str, ...]  # "features", "logits", "model" (+ "labels" always for pairwise)
    higher_is_better: bool
    reference: str
    multilabel: bool = False
    set_level: bool = False
    returns_parts: bool = False
    defaults: dict = field(default_factory=dict)
    task: str = "classification"  # "segmentation": needs pixel samples of masks (CC-FV), not image labels


def _defaults(fn) -> dict:
    return {k: v.default for k, v in inspect.signature(fn).parameters.items()
            if v.default is not inspect.Parameter.empty}


def _m(name, fn, inputs, ref, **kw) -> MetricInfo:
    return MetricInfo(name, fn, tuple(inputs), kw.pop("higher_is_better", True), ref, defaults=_defaults(fn), **kw)


REGISTRY: dict[str, MetricInfo] = {m.name: m for m in [
    _m("logme", pairwise.logme, ["features"], "You et al., ICML 2021; JMLR 2022 (fixed point)", multilabel=True),
    _m("leep", pairwise.leep, ["logits"], "Nguyen et al., ICML 2020"),
    _m("nleep", gmm.nleep, ["features"], "Li et al., CVPR 2021"),
    _m("sfda", pairwise.sfda, ["features"], "Shao et al., ECCV 2022 (non-saturating form, see sfda)"),
    _m("sfda_reference", pairwise.sfda_reference, ["features"], "Shao et al., ECCV 2022 (reference arithmetic, "
       "[D]; saturates at 1.0 on small targets)"),
    _m("parc", neighbours.parc, ["features"], "Bolya et al., NeurIPS 2021", multilabel=True),
    _m("ncti_parts", pairwise.ncti_parts, ["features"], "Wang et al., ICCV 2023", returns_parts=True),
    _m("lp", neighbours.lp, ["features"], "Juodelyte et al., 2024 [D]"),
    _m("h_score", pairwise.h_score, ["features"], "Bao et al., ICIP 2019"),
    _m("regularized_h_score", pairwise.regularized_h_score, ["features"], "Ibrahim et al., ECML-PKDD 2022"),
    _m("nce", pairwise.nce, ["logits"], "Tran et al., ICCV 2019"),
    _m("gbc", pairwise.gbc, ["features"], "Pandy et al., CVPR 2022"),
    _m("transrate", pairwise.transrate, ["features"], "Huang et al., ICML 2022"),
    _m("etran_parts", pairwise.etran_parts, ["features"], "Gholami et al., ICCV 2023", returns_parts=True),
    _m("knn_accuracy", neighbours.knn_accuracy, ["features"], "leave-one-out k-NN baseline", multilabel=True),
    _m("linear_probe", probe.linear_probe, ["features"], "cross-validated logistic regression baseline",
       multilabel=True),
    _m("fu", _fu_fn, ["model"], "Juodelyte et al., 2024 [D]"),
    _m("ncti", setlevel.ncti, ["ncti_parts"], "Wang et al., ICCV 2023", set_level=True),
    _m("etran", setlevel.etran, ["etran_parts"], "Gholami et al., ICCV 2023", set_level=True),
    _m("lp_fu", setlevel.lp_fu, ["lp", "fu"], "Juodelyte et al., 2024 [D]", set_level=True),
    _m("ccfv_parts", _ccfv_parts_fn, ["features", "cases", "global_features", "global_cases"],
       "Yang et al., MICCAI 2023 [S]", returns_parts=True, higher_is_better=False, task="segmentation"),
    _m("ccfv", _ccfv_fn, ["ccfv_parts"], "Yang et al., MICCAI 2023 [S]", task="segmentation"),
]}


def list_metrics(*, set_level: bool | None = None, inputs: str | None = None) -> list[str]:
    """Names of the registered metrics, optionally only (non-)set-level ones or those needing ``inputs``."""
    out = []
    for name, m in REGISTRY.items():
        if set_level is not None and m.set_level != set_level:
            continue
        if inputs is not None and inputs not in m.inputs:
            continue
        out.append(name)
    return out


def score(name: str, **inputs):
    """Compute metric ``name`` from keyword inputs.

    Pairwise: ``features=`` or ``logits=`` (or ``model=, first_layer=, second_layer=, images=`` for FU) and
    ``labels=``; extra keywords are passed on as options (e.g. ``score("gbc", features=X, labels=y,
    gaussian="diagonal")``). Set-level: ``score("ncti", parts_by_source=...)``, ``score("lp_fu",
    lp_by_source=..., fu_by_source=...)``. Unused input arrays (e.g. ``logits`` for a feature metric) are
    ignored, so one dict of inputs can be passed to every metric.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(REGISTRY)}")
    m = REGISTRY[name]
    params = inspect.signature(m.fn).parameters
    kwargs = {k: v for k, v in inputs.items() if k in params}
    unknown = set(inputs) - set(params) - {"features", "logits", "labels", "model", "images"}
    if unknown:
        raise ValueError(f"{name}: unexpected arguments {sorted(unknown)}")
    missing = [k for k, v in params.items() if v.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ValueError(f"{name} needs {missing} (inputs: {m.inputs})")
    with fair_threads():  # the thread policy applies where a metric is run, not on each metric function
        return m.fn(**kwargs)

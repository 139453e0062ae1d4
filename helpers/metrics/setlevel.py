"""Set-level scores: combine per-source parts across the candidate sources of one target.

Every combination here min-max normalises across the candidates, so which sources take part changes every
source's score. The target's own data set is not a candidate for it: with ``target=`` given, the source equal
to the target (:func:`helpers.names.canonical_name`, the rule :func:`helpers.evaluation.correlate` uses) is
left out *before* normalising every part, as PROTOCOL.md says, and gets NaN in the result.
``target=None`` normalises over every source given (the caller has already chosen the candidates).

Where this differs from [D]: [D]'s notebook normalises each published column as a whole. Its LP column has no
value for the self source (so LP's min-max leaves it out), but its FU column has one, which stays in FU's
min-max. :func:`lp_fu` with ``self_in_fu=True`` is that exact form; on [D]'s published tables only dermamnist
moves (weighted tau .702 in [D]'s form, .699 with the self source left out of both; the Reproduction chapter
computes both, :func:`helpers.reference.load_all_scores` ``combine_over``).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..names import is_self
from ._common import minmax

__all__ = ["ncti", "etran", "lp_fu"]


def _parts(parts_by_source: Mapping, fields: tuple[str, ...], name: str) -> dict[str, dict]:
    if not isinstance(parts_by_source, Mapping) or not parts_by_source:
        raise ValueError(f"{name} needs a non-empty dict source -> parts")
    out = {f: {} for f in fields}
    for src, parts in parts_by_source.items():
        if isinstance(parts, Mapping):
            vals = [parts[f] for f in fields]
        elif hasattr(parts, "_fields"):
            vals = [getattr(parts, f) for f in fields]
        else:
            vals = list(parts)
            if len(vals) != len(fields):
                raise ValueError(f"{name}: parts of {src!r} must have fields {fields}")
        for f, v in zip(fields, vals):
            v = float(v)
            if not np.isfinite(v):
                raise ValueError(f"{name}: non-finite {f} for source {src!r}")
            out[f][src] = v
    return out


def _split_self(by_source: Mapping, target, name: str) -> tuple[dict, list]:
    """The candidates (every source but the target's own) and the left-out self sources."""
    if not isinstance(by_source, Mapping) or not by_source:
        raise ValueError(f"{name} needs a non-empty dict source -> parts")
    selves = [s for s in by_source if is_self(s, target)]
    candidates = {s: v for s, v in by_source.items() if s not in selves}
    if not candidates:
        raise ValueError(f"{name}: no candidate source for target {target!r} once its own source is left out")
    return candidates, selves


def _with_self_nan(scores: dict, selves: list, order) -> dict:
    out = dict(scores)
    out.update({s: float("nan") for s in selves})
    return {s: out[s] for s in order}


def ncti(parts_by_source: Mapping, *, target=None, sign_bug: bool = False) -> dict:
    """NCTI over candidate sources: min-max normalise seli, ncc and vc across sources, score = ncc + seli - vc.

    Higher is better. ``parts_by_source``: source -> :class:`~helpers.metrics.NCTIParts` (or a dict / 3-tuple
    (seli, ncc, vc)). The published code of [D] *adds* the normalised vc (a sign bug: vc measures within-class
    variability, which the NCTI paper penalises); ``sign_bug=True`` reproduces it. Sources whose part is equal
    across all candidates get 0 for that part. Reference: Wang et al., ICCV 2023.
    ``target``: the target's own source is left out before the normalisation and scored NaN (module docstring).
    """
    candidates, selves = _split_self(parts_by_source, target, "ncti")
    p = _parts(candidates, ("seli", "ncc", "vc"), "ncti")
    s, n, v = minmax(p["seli"]), minmax(p["ncc"]), minmax(p["vc"])
    sign = 1.0 if sign_bug else -1.0
    return _with_self_nan({k: n[k] + s[k] + sign * v[k] for k in p["seli"]}, selves, parts_by_source)


def etran(parts_by_source: Mapping, *, target=None, include_svd: bool = False, normalize: bool = True) -> dict:
    """ETran over candidate sources: energy + lda (+ svd) parts, each min-max normalised across the sources.

    Higher is better. The ETran paper sums its energy, classification (LDA) and regression (SVD) scores; the
    SVD term is the one of its detection setting, so ``include_svd`` is off by default for classification.
    The parts live on very different scales (a logsumexp energy vs a probability), hence ``normalize=True``
    (min-max across the candidates, like the other set-level scores here); ``normalize=False`` sums raw parts.
    Reference: Gholami et al., ICCV 2023.
    ``target``: the target's own source is left out before the normalisation and scored NaN (module docstring).
    """
    fields = ("energy", "lda", "svd")
    candidates, selves = _split_self(parts_by_source, target, "etran")
    p = _parts(candidates, fields, "etran")
    use = fields if include_svd else fields[:2]
    parts = {f: (minmax(p[f]) if normalize else p[f]) for f in use}
    return _with_self_nan({k: float(sum(parts[f][k] for f in use)) for k in p["energy"]}, selves, parts_by_source)


def lp_fu(lp_by_source: Mapping, fu_by_source: Mapping, *, target=None, self_in_fu: bool = False) -> dict:
    """[D]'s proposed score: min-max(LP) x min-max(FU) across the candidate sources of one target.

    Higher is better. Both dicts must have the same sources. A source at the minimum of either gets 0.
    ``target``: the target's own source is left out before both normalisations and scored NaN (module
    docstring, PROTOCOL.md). ``self_in_fu=True`` keeps the self source's FU in FU's min-max, as [D]'s notebook
    did (its LP is still left out, and its own score is still NaN): [D]'s exact form, kept to show the
    difference. Reference: Juodelyte et al., 2024 ([D]).
    """
    if set(lp_by_source) != set(fu_by_source):
        raise ValueError("lp_fu: LP and FU must be given for the same sources; differing: "
                         f"{sorted(set(lp_by_source) ^ set(fu_by_source), key=str)}")
    lp_c, selves = _split_self(lp_by_source, target, "lp_fu")
    fu_c = {s: fu_by_source[s] for s in lp_c}
    for name, d in (("LP", lp_c), ("FU", fu_c)):
        if not all(np.isfinite(float(v)) for v in d.values()):
            raise ValueError(f"lp_fu: non-finite {name} score among the candidates")
    a = minmax(lp_c)
    if self_in_fu and selves:
        fu_all = {**fu_c, **{s: fu_by_source[s] for s in selves if np.isfinite(float(fu_by_source[s]))}}
        b = {s: v for s, v in minmax(fu_all).items() if s in fu_c}
    else:
        b = minmax(fu_c)
    return _with_self_nan({k: a[k] * b[k] for k in lp_c}, selves, lp_by_source)

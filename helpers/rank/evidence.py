"""The evidence behind :data:`DEFAULT_RECOMMEND`, recorded as constants.

The default is derived by :func:`helpers.rank.default.derive_rank_default` from the public benchmarks
under ``data/reference/`` (medical classification benchmarks first; the rule is in that module's docstring).
The wheel does not ship ``data/reference/``, so an installed package cannot derive it at run time: the result
is written down here, and ``tests/test_rank_default.py`` re-derives it from the data and checks that these
constants equal it (change the data or the rule and the test says to update them; ``python -m
helpers.rank.default`` prints the new ones).

Derived result: LogME alone. It is the only metric helpers.rank computes that two independent research groups
evaluated on medical targets and that comes out best there; no other such metric's value lies inside its
interval. k-NN accuracy and the linear probe have no public evidence and were left out by the rule; [D]'s
LP x FU was evaluated by one group only (positive on source data sets, negative on architectures).
"""
from __future__ import annotations

#: the recommendation's metrics by default (the derived combination, best first)
DEFAULT_RECOMMEND = ("logme",)

#: what the default rests on: the stamp of :func:`helpers.rank.default.derive_rank_default`
EVIDENCE = {
    "evidence": "public benchmarks under data/reference (helpers.rank.default.derive_rank_default)",
    "benchmarks": ["chaves2023", "chaves2024", "dovile2024", "modelspider", "stable_transfer"],
    "commits": {"chaves2023": "ffe4d42ade8ac782dd7fb0356d07934e26c563e0",
                "chaves2024": "a78087003652a9b13b7f689f08fb6ef751ee82fd",
                "dovile2024": "7e308c4998e98d5781fbac5cdde2fa7c0002977d",
                "modelspider": "d2a53e4d19db37a740c0807570f71dfaa06ab83d",
                "stable_transfer": "4963f325fe8bf41c69aeb2717d0ef408f623500e"},
    "content_sha256": "8ee91b3570518d82",
    "support": {"logme": {"tau": 0.181, "ci_low": 0.131, "ci_high": 0.23, "tier": "medical",
                          "benchmarks": "chaves2023, chaves2024, dovile2024", "groups": 2, "targets": 28}},
    "rule": ("medical classification evidence first (natural only where no metric qualifies); units averaged "
             "within research group, groups equally; eligible: target-dependent metrics evaluated on medical "
             "targets by at least 2 research groups; chosen: the best eligible metric and every eligible metric "
             "with a positive value inside its 95% interval; metrics without public evidence are not chosen"),
    "n_boot": 1000,
    "seed": 0,
    "level": 0.95,
    "derived_on": "2026-12-05",
}

#: what ``settings["recommend_basis"]`` says when the user chose the metrics
USER_CHOICE = "user's choice"


def basis(recommend) -> dict:
    """``settings["recommend_basis"]`` of a ranking: the default's evidence stamp when ``recommend`` is the
    default, else ``{"source": "user's choice"}``."""
    if tuple(recommend) == DEFAULT_RECOMMEND:
        return {"source": "default", **EVIDENCE}
    return {"source": USER_CHOICE}


def reason_tag(b: dict) -> str:
    """A few words for the recommendation rows' ``reason``: the default's evidence hash, or the user's choice."""
    if b.get("source") != "default":
        return "metrics: user's choice"
    return f"default metrics from public evidence {b['content_sha256']} ({b['derived_on']})"


def describe_basis(b: dict) -> str:
    """One line for the command line: which evidence and version the recommendation rests on."""
    if b.get("source") != "default":
        return "recommendation metrics: the user's choice (no public evidence stamp)"
    sup = "; ".join(f"{m}: mean weighted tau {s['tau']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}] over "
                    f"{s['targets']} {s['tier']} target rankings of {s['benchmarks']}" for m, s in b["support"].items())
    return (f"default recommendation ({', '.join(DEFAULT_RECOMMEND)}) rests on {sup}; evidence "
            f"{b['content_sha256']} derived {b['derived_on']} (helpers.rank.default)")

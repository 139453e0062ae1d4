"""helpers.rank's default recommendation follows the public evidence: the derivation is deterministic, the
recorded constants equal it, the rule does what it says, the override still works and a ranking's settings
carry the evidence stamp."""
import numpy as np
import pandas as pd
import pytest

from helpers import rank as R
from helpers import reference as ref
from helpers.rank import default as D
from helpers.rank import evidence as E


@pytest.fixture(scope="module")
def derived():
    return D.derive_rank_default(today=E.EVIDENCE["derived_on"])


def test_derivation_is_deterministic(derived):
    again = D.derive_rank_default(today=E.EVIDENCE["derived_on"])
    pd.testing.assert_frame_equal(derived.table, again.table)
    assert derived.chosen == again.chosen and derived.stamp == again.stamp


def test_recorded_constants_equal_the_derivation(derived):
    """If this fails, the data under data/reference or the rule changed: ``python -m helpers.rank.default``
    prints the constants to record in helpers/rank/evidence.py (say so in the Rank chapter if the default
    changes)."""
    assert derived.chosen == E.DEFAULT_RECOMMEND == R.DEFAULT_RECOMMEND
    assert derived.stamp == E.EVIDENCE
    assert E.EVIDENCE["rule"] == D.RULE


def test_every_chosen_metric_is_a_rank_metric_with_medical_evidence(derived):
    t = derived.table.set_index("metric")
    assert derived.chosen and set(derived.chosen) <= set(R.default_metrics())
    for m in derived.chosen:
        assert t.at[m, "tier"] == "medical" and t.at[m, "n_groups"] >= D.MIN_GROUPS and t.at[m, "tau"] > 0
    # k-NN accuracy and the linear probe have no public evidence, and the rule leaves them out
    for m in ("knn_accuracy", "linear_probe"):
        assert t.at[m, "tier"] == "none" and not t.at[m, "chosen"]


def test_scorer_map_names_registry_metrics_and_lists_the_rest(derived):
    names = set(R.default_metrics())
    for mapping in D.SCORER_MAP.values():
        assert set(mapping.values()) <= names
    assert set(derived.table["metric"]) == names
    # every scorer that is not mapped is listed with why, and the segmentation benchmark is among them
    assert derived.unmapped["why"].str.len().gt(0).all()
    assert {"ccfv", "transrate"} <= set(derived.unmapped.loc[derived.unmapped.benchmark == "schlimme2023", "scorer"])
    assert "ncti" in set(derived.unmapped.loc[derived.unmapped.benchmark == "dovile2024", "scorer"])


def test_every_loaded_benchmark_was_reviewed(derived):
    """A benchmark added to helpers.benchmarks.BENCHMARKS must be mapped (SCORER_MAP, CONVENTIONS) or its scorers
    listed in UNMAPPED with why, so that the default keeps following all of the public evidence."""
    from helpers.benchmarks import BENCHMARKS

    assert set(BENCHMARKS) <= set(D.CONVENTIONS) | set(D.UNMAPPED)
    assert not (derived.unmapped["why"] == D.NOT_REVIEWED).any()


def test_dovile_evidence_is_unflipped_and_matches_the_published_dataset_means(derived):
    u = derived.units[derived.units["unit"] == "dovile2024/dataset/medical"].set_index("metric")["mean"]
    for m in ("logme", "leep", "nleep", "parc", "lp", "fu"):
        assert round(u[m], 3) == ref.PUBLISHED_MEANS["dataset"][m]
    # the architecture scenario is correlated as helpers.rank uses the scores (no flips): [D]'s flipped LP x FU
    # is .261, the unflipped one negative
    a = derived.units[derived.units["unit"] == "dovile2024/architecture/medical"].set_index("metric")["mean"]
    assert a["lp_fu"] < 0


def test_content_hash_ignores_row_order():
    table, _ = D.evidence_table()
    shuffled = table.sample(frac=1.0, random_state=1)
    assert D.content_hash(shuffled) == D.content_hash(table)
    changed = table.copy()
    changed.loc[0, "score"] += 1e-6
    assert D.content_hash(changed) != D.content_hash(table)


def _row(metric, tier, tau, lo, hi, groups=2):
    return {"metric": metric, "tier": tier, "tau": tau, "ci_low": lo, "ci_high": hi, "n_groups": groups}


def test_the_rule():
    t = pd.DataFrame([_row("a", "medical", 0.30, 0.20, 0.40), _row("b", "medical", 0.25, 0.0, 0.5),
                      _row("c", "medical", 0.10, -0.2, 0.45), _row("d", "medical", 0.35, 0.3, 0.4, groups=1),
                      _row("imagenet_top1", "medical", 0.5, 0.4, 0.6), _row("e", "natural", 0.9, 0.8, 1.0),
                      _row("knn_accuracy", "none", np.nan, np.nan, np.nan, 0)])
    chosen, out = D.choose(t)
    # b's value lies inside a's interval; c's interval overlaps a's but its value does not; d has one group;
    # the agnostic baseline, the natural-only and the unevaluated metric are never chosen
    assert chosen == ("a", "b")
    assert out.set_index("metric")["why"].str.contains("rule").all()
    # without medical candidates the natural evidence decides
    nat = t[t["tier"] != "medical"]
    assert D.choose(nat)[0] == ("e",)


@pytest.fixture
def tiny_target(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "target.npz"
    np.savez(path, images=rng.integers(0, 255, (24, 28, 28), dtype=np.uint8), labels=np.repeat([0, 1], 12))
    return path


def test_default_and_override_are_recorded_in_the_settings(tiny_target):
    kw = dict(metrics=["knn_accuracy"], n_boot=3, device="cpu", progress=False, cache_dir=None, profile=None)
    cands = ["resnet18:random@28", "resnet18:random@32"]
    res = R.rank_models(tiny_target, cands, **kw)
    assert tuple(res.settings["recommend"]) == R.DEFAULT_RECOMMEND
    basis = res.settings["recommend_basis"]
    assert basis["source"] == "default" and basis["content_sha256"] == E.EVIDENCE["content_sha256"]
    assert basis["commits"] == E.EVIDENCE["commits"]
    reason = res.recommendation["reason"].iloc[0]
    assert "mean rank over " + ", ".join(R.DEFAULT_RECOMMEND) in reason and E.EVIDENCE["content_sha256"] in reason
    # the user's override still decides the recommendation, and the settings say it was theirs
    mine = R.rank_models(tiny_target, cands, recommend="knn_accuracy", **kw)
    assert mine.settings["recommend"] == ["knn_accuracy"]
    assert mine.settings["recommend_basis"] == {"source": "user's choice"}
    assert mine.recommendation["reason"].iloc[0].startswith("mean rank over knn_accuracy")
    assert mine.recommendation["reason"].iloc[0].endswith("metrics: user's choice")

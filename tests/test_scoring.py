"""Fast test of the scoring stage on a tiny real case (random-init resnet18 on a few breastmnist images)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import scoring as S
from helpers.runner import Stage
from helpers.stages import scoring as scoring_stage


@pytest.fixture()
def tiny_profile():
    return {"name": "tiny",
            "data": {"file_size": 28, "image_size": 28, "fold_seed": 24, "folds": 1},
            "sources": {"dataset": ["random", "breastmnist"]},
            "pretraining": {"architecture": "resnet18"},
            "finetuning": {"image_size": 28, "max_train_images": 36},
            "scoring": {"batch_size": 16},
            "metrics": ["logme", "leep", "lp", "fu", "ncti", "etran", "not_a_metric"]}


def test_scoring_rows_skip_and_resume(tiny_profile, tmp_path, shared_data_root, monkeypatch):
    # "breastmnist" has no checkpoint in tmp_path: it is unavailable, recorded with its reason
    table = scoring_stage.run_scoring(tiny_profile, ["random", "breastmnist"], ["breastmnist"], tmp_path,
                          root=shared_data_root, device="cpu", progress=False)
    assert list(table.columns) == S.COLUMNS
    assert (tmp_path / "scores.csv").is_file()
    ok = table[table["source"] == "random"]
    by_metric = ok.set_index("metric")
    for m in ["logme", "leep", "lp", "fu", "ncti", "etran", "lp_fu"]:
        assert by_metric.loc[m, "status"] == "ok", (m, by_metric.loc[m, "reason"])
        assert np.isfinite(by_metric.loc[m, "score"])
        assert by_metric.loc[m, "seconds"] >= 0
    assert by_metric.loc["not_a_metric", "status"] == "skipped"
    assert (ok["fold"] == 1).all() and (ok["target"] == "breastmnist").all()
    unav = table[table["source"] == "breastmnist"]
    assert len(unav) and (unav["status"] == "unavailable").all()
    assert unav["reason"].str.contains("checkpoint").all()

    # features are cached in the unit's work folder as plain .npy files
    stage = Stage("scoring", tmp_path)
    work = list((stage.root / "work").iterdir())
    assert len(work) == 1
    feats = np.load(work[0] / "features.npy", allow_pickle=False)
    assert feats.shape == (36, 512)

    # the wide tables for correlate
    wide = S.score_tables(table)
    assert set(wide) >= {"logme", "leep", "lp", "fu", "lp_fu"}
    assert list(wide["logme"].index) == ["random"] and list(wide["logme"].columns) == ["breastmnist"]

    # resume: a second run recomputes nothing and gives the same table
    def boom(*a, **k):
        raise AssertionError("a finished unit was recomputed")

    monkeypatch.setattr(scoring_stage, "score_unit", boom)
    again = scoring_stage.run_scoring(tiny_profile, ["random", "breastmnist"], ["breastmnist"], tmp_path,
                          root=shared_data_root, device="cpu", progress=False)
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), table.drop(columns="seconds"))


def test_default_metrics_are_the_classification_ones():
    from helpers.metrics import REGISTRY
    from helpers.scoring import profile_metrics

    names = profile_metrics({"metrics": None})
    assert "logme" in names and "ncti" in names and "lp_fu" in names
    assert not [n for n in names if REGISTRY[n].task != "classification"]  # CC-FV has its own stage
    assert "ccfv" not in names and "ncti_parts" not in names


def _unit_rows(target="breastmnist"):
    """Unit rows as the scoring units store them: LP, FU and NCTI parts for four candidates and the target's
    own source, whose extreme values reorder the others when it takes part in the normalisation."""
    lp = {"a": 0.7, "b": 0.5, "c": 0.9, "d": 0.6, target: 0.1}
    fu = {"a": 2.0, "b": 1.0, "c": 3.0, "d": 2.5, target: 2.0}
    parts = {"a": (10.0, 0.50, 1.0), "b": (20.0, 0.60, 3.0), "c": (15.0, 0.90, 2.0), "d": (12.0, 0.55, 1.2),
             target: (100.0, 0.55, 2.0)}
    rows = []
    for s in lp:
        base = {"source": s, "target": target, "fold": 1, "seconds": 0.5, "status": "ok", "reason": "",
                "parts": ""}
        rows.append({**base, "metric": "lp", "score": lp[s]})
        rows.append({**base, "metric": "fu", "score": fu[s]})
        seli, ncc, vc = parts[s]
        rows.append({**base, "metric": "ncti_parts", "score": float("nan"),
                     "parts": json.dumps({"seli": seli, "ncc": ncc, "vc": vc})})
    return pd.DataFrame(rows)


def test_set_level_rows_leave_the_targets_own_source_out():
    from helpers import metrics as M

    units = _unit_rows()
    rows = pd.DataFrame(S.set_level_rows(units, ["ncti", "lp_fu"]))
    for m in ("ncti", "lp_fu"):
        g = rows[rows["metric"] == m].set_index("source")
        assert g.loc["breastmnist", "status"] == "skipped" and "own source" in g.loc["breastmnist", "reason"]
        assert (g.drop(index="breastmnist")["status"] == "ok").all()
        assert g.drop(index="breastmnist")["reason"].str.contains("across 4 sources").all()
    lp_fu = rows[rows["metric"] == "lp_fu"].set_index("source")["score"].drop("breastmnist")
    expected = M.lp_fu({"a": 0.7, "b": 0.5, "c": 0.9, "d": 0.6}, {"a": 2.0, "b": 1.0, "c": 3.0, "d": 2.5})
    assert lp_fu.to_dict() == pytest.approx(expected)
    # the earlier form (self included) reorders the other candidates: that is why it is not the default
    old = pd.DataFrame(S.set_level_rows(units, ["ncti", "lp_fu"], include_self=True))
    for m in ("ncti", "lp_fu"):
        new_order = rows[(rows.metric == m) & (rows.status == "ok")].sort_values("score")["source"].tolist()
        old_rows = old[(old.metric == m) & (old.source != "breastmnist")]
        assert old_rows.sort_values("score")["source"].tolist() != new_order, m


def test_segmentation_encoder_source_skips_source_head_metrics(tiny_profile, tmp_path, shared_data_root):
    from helpers.segmentation.model import UNet, save_segmentation_checkpoint

    torch.manual_seed(0)
    path = save_segmentation_checkpoint(UNet(2, decoder_channels=(32, 16, 16, 8, 8)), tmp_path / "seg_busi")
    profile = {**tiny_profile, "metrics": ["logme", "leep", "nce"]}
    table = scoring_stage.run_scoring(profile, [str(path)], ["breastmnist"], tmp_path / "res", root=shared_data_root,
                          device="cpu", progress=False).set_index("metric")
    assert table.loc["logme", "status"] == "ok" and np.isfinite(table.loc["logme", "score"])
    for m in ("leep", "nce"):
        assert table.loc[m, "status"] == "skipped" and "no classification head" in table.loc[m, "reason"]


def test_moved_stage_names_warn_and_forward():
    from helpers.segmentation import scoring as SS
    from helpers.stages import segmentation as seg_stage

    with pytest.warns(DeprecationWarning, match="helpers.stages.scoring.run_scoring"):
        assert S.run_scoring is scoring_stage.run_scoring
    with pytest.warns(DeprecationWarning, match="is now helpers.stages.scoring"):
        assert S.set_level_comparison is scoring_stage.set_level_comparison
    with pytest.warns(DeprecationWarning, match="helpers.stages.segmentation.run_segmentation_scoring"):
        assert SS.run_segmentation_scoring is seg_stage.run_segmentation_scoring
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        S.nope


def _features(n=40, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return {"features": torch.randn(n, d, generator=g) + y[:, None].float(), "logits": torch.randn(n, 3, generator=g)}, y


def test_kernel_scores_every_metric_and_records_why_not():
    inputs, y = _features()
    calls = {"fu": lambda: (_ for _ in ()).throw(S.Inapplicable("no model here", "unavailable")),
             "mine": lambda: float("inf")}
    out = S.score_model(["logme", "leep", "ncti_parts", "lp", "ncti", "nope", "fu", "mine", "gbc"], inputs, y,
                        source_head=False, per_sample=("lp",), calls=calls,
                        options={"gbc": {"gaussian": "no such form"}})
    assert list(out) == ["logme", "leep", "ncti_parts", "lp", "ncti", "nope", "fu", "mine", "gbc"]
    assert out["logme"].status == "ok" and out["logme"].score == pytest.approx(
        float(S.REGISTRY["logme"].fn(inputs["features"], y)))
    assert out["leep"].status == "skipped" and out["leep"].reason == S.NO_LOGITS
    assert out["ncti_parts"].status == "ok" and set(out["ncti_parts"].parts) == {"seli", "ncc", "vc"}
    assert np.isnan(out["ncti_parts"].score)
    assert out["lp"].terms.shape == (40,) and out["lp"].score == float(np.nanmean(out["lp"].terms))
    for m in ("ncti", "nope"):  # set-level and unknown names are not the kernel's
        assert out[m].status == "skipped" and "not a registered pairwise metric" in out[m].reason
    assert (out["fu"].status, out["fu"].reason, out["fu"].seconds) == ("unavailable", "no model here", 0.0)
    assert out["mine"].status == "nan" and out["mine"].reason == S.NON_FINITE
    assert out["gbc"].status == "error" and out["gbc"].reason.startswith("ValueError")
    multi = S.score_model(["leep", "logme"], inputs, torch.stack([y, 1 - y], 1), multilabel=True)
    assert multi["leep"].reason == S.MULTILABEL and multi["logme"].status == "ok"


def test_combine_is_the_registrys_set_level_metric():
    lp, fu = {"a": 0.7, "b": 0.5, "c": 0.9}, {"a": 2.0, "b": 1.0, "c": 3.0}
    got = S.combine("lp_fu", {s: {"lp": lp[s], "fu": fu[s]} for s in lp})
    assert got == S.REGISTRY["lp_fu"].fn(lp, fu)
    with pytest.raises(ValueError, match="not a set-level metric"):
        S.combine("logme", {})


def test_feature_cache_round_trip(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"features": np.ones((3, 2), np.float32), "logits": np.zeros((3, 4)), "labels": np.arange(3)}

    cache = S.FeatureCache(tmp_path / "entry")
    first, hit = cache.get(compute)
    again, hit2 = cache.get(compute)
    assert (hit, hit2, len(calls)) == (False, True, 1)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    (tmp_path / "entry" / "logits.npy").write_bytes(b"damaged")
    assert cache.read() is None  # recomputed, not an error
    meta = S.FeatureCache(tmp_path / "m", meta=True)
    meta.write(compute(), {"a": 1})
    meta.write_meta({"a": 2})
    assert meta.read()[1] == {"a": 2} and S.FeatureCache(None).read() is None

"""Fast test of the scoring stage on a tiny real case (random-init resnet18 on a few breastmnist images)."""
import numpy as np
import pandas as pd
import pytest

from helpers import scoring as S
from helpers.runner import Stage


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
    table = S.run_scoring(tiny_profile, ["random", "breastmnist"], ["breastmnist"], tmp_path,
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

    monkeypatch.setattr(S, "score_unit", boom)
    again = S.run_scoring(tiny_profile, ["random", "breastmnist"], ["breastmnist"], tmp_path,
                          root=shared_data_root, device="cpu", progress=False)
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), table.drop(columns="seconds"))


def test_default_metrics_are_the_classification_ones():
    from helpers.metrics import REGISTRY
    from helpers.scoring import profile_metrics

    names = profile_metrics({"metrics": None})
    assert "logme" in names and "ncti" in names and "lp_fu" in names
    assert not [n for n in names if REGISTRY[n].task != "classification"]  # CC-FV has its own stage
    assert "ccfv" not in names and "ncti_parts" not in names

"""The segmentation scoring stage: CC-FV, its ablations and the baselines on a tiny real bank."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from helpers import segmentation as S
from helpers.metrics.ccfv import ccfv_parts
from helpers.scoring import COLUMNS, score_tables
from helpers.segmentation import scoring as SS
from helpers.stages import segmentation as seg_stage


def _tiny_profile():
    return {"name": "tiny", "segmentation": {
        "sets": ["acdc", "ph2", "busi"], "targets": ["acdc", "ph2"],
        "sources": ["random", "imagenet", "union", "acdc", "ph2", "busi"], "image_size": 32, "seed": 0,
        "model": {"decoder_channels": [32, 16, 16, 8, 8]},
        "pretraining": {"epochs": 1, "batch_size": 8, "max_train_images": 16, "max_val_images": 4},
        "finetuning": {"epochs": 1, "batch_size": 8, "max_train_images": 16, "max_val_images": 4,
                       "max_test_images": 6},
        "scoring": {"max_images": 10, "per_case": 48, "global_per_case": 16, "min_per_class": 4,
                    "layers": ["dec1", "dec0"], "batch_size": 4}}}


@pytest.fixture(scope="module")
def bank(tmp_path_factory, shared_data_root):
    out = tmp_path_factory.mktemp("segbank")
    p = _tiny_profile()
    seg_stage.run_segmentation_pretraining(p, out, shared_data_root, device="cpu", progress=False)
    scores = seg_stage.run_segmentation_scoring(p, out, shared_data_root, device="cpu", progress=False)
    return p, out, scores


def test_every_score_for_every_available_pair(bank):
    p, out, scores = bank
    assert list(scores.columns) == COLUMNS + ["parts"]
    assert (out / "segmentation_scores.csv").is_file()
    avail = scores[scores["status"] != "unavailable"]
    for target, sources in (("acdc", {"random", "union", "ph2", "busi"}), ("ph2", {"random", "union", "acdc", "busi"})):
        got = avail[avail["target"] == target]
        assert set(got["source"]) == sources
        assert set(got["metric"]) == set(SS.SCORES)
        bad = got[got["status"] != "ok"]
        assert bad.empty, bad[["source", "metric", "reason"]].to_string()
    # ImageNet weights are either there or recorded as unavailable with a reason, never a crash
    unav = scores[scores["status"] == "unavailable"]
    assert set(unav["source"]) <= {"imagenet"} and (unav["reason"] != "").all()


def test_same_pixels_for_every_source_and_resume(bank, shared_data_root):
    p, out, scores = bank
    ext = SS.extraction_times(out)
    for target in ("acdc", "ph2"):
        notes = set(ext[ext["target"] == target]["note"])
        assert len(notes) == 1, notes  # the pixel sample depends on the target masks only
    units = sorted((out / "segmentation_scoring" / "units").glob("*.json"))
    mtimes = [u.stat().st_mtime_ns for u in units]
    again = seg_stage.run_segmentation_scoring(p, out, shared_data_root, device="cpu", progress=False)
    assert [u.stat().st_mtime_ns for u in units] == mtimes  # nothing recomputed
    assert again.equals(scores) or np.allclose(again["score"].fillna(0), scores["score"].fillna(0))


def test_ccfv_rows_are_consistent_with_their_parts(bank):
    _, _, scores = bank
    ok = scores[scores["status"] == "ok"].set_index(["target", "source", "metric"])
    for (target, source), _ in ok.groupby(level=[0, 1]):
        parts = json.loads(ok.loc[(target, source, "ccfv"), "parts"])
        assert list(parts) == ["dec1", "dec0"]
        expect = -sum(math.log(v["cc"] * v["fv"]) for v in parts.values())
        assert ok.loc[(target, source, "ccfv"), "score"] == pytest.approx(expect, rel=1e-12)
        last = parts["dec0"]
        assert ok.loc[(target, source, "ccfv_single_scale"), "score"] == pytest.approx(
            -math.log(last["cc"] * last["fv"]), rel=1e-12)
        assert ok.loc[(target, source, "ccfv_no_cc"), "score"] == pytest.approx(
            -sum(math.log(v["fv"]) for v in parts.values()), rel=1e-12)
        assert ok.loc[(target, source, "ccfv_no_fv"), "score"] == pytest.approx(
            -sum(math.log(v["cc"]) for v in parts.values()), rel=1e-12)
        # the official averaging changes only CC (same FV)
        off = json.loads(ok.loc[(target, source, "ccfv_official_average"), "parts"])
        assert all(off[k]["fv"] == pytest.approx(parts[k]["fv"]) for k in parts)


def test_official_averaging_ranks_like_ours_for_one_class(bank):
    _, _, scores = bank
    tables = score_tables(scores, ["ccfv", "ccfv_official_average"])
    ours, official = tables["ccfv"]["ph2"].dropna(), tables["ccfv_official_average"]["ph2"].dropna()
    # one foreground class: the official sum of sums is a constant multiple of our mean (same for every model)
    shift = (official - ours.reindex(official.index)).to_numpy()
    assert np.allclose(shift, shift[0])


def test_scores_recomputed_from_the_cached_arrays(bank, shared_data_root):
    p, out, scores = bank
    key_dir = next(d for d in (out / "segmentation_scoring" / "work").iterdir() if (d / "dec0.npy").is_file())
    unit = json.loads((out / "segmentation_scoring" / "units" / f"{key_dir.name}.json").read_text())
    cfg = unit["config"]
    _, ds, n = SS.target_scoring_set(cfg, shared_data_root, "cpu")
    sample = SS.pixel_sample(cfg, ds.masks[:n].cpu())
    arrays = {name: np.load(key_dir / f"{name}.npy", allow_pickle=False) for name in ("dec0", "dec0__global")}
    assert arrays["dec0"].shape[0] == len(sample.label) and arrays["dec0__global"].shape[0] == len(sample.global_case)
    parts = ccfv_parts(arrays["dec0"], sample.label, sample.case, arrays["dec0__global"], sample.global_case)
    row = scores[(scores["source"] == cfg["source"]) & (scores["target"] == cfg["target"])
                 & (scores["metric"] == "ccfv_single_scale")].iloc[0]
    assert row["score"] == pytest.approx(-math.log(parts.cc * parts.fv), rel=1e-12)


def test_unknown_layer_or_score_is_a_clear_error():
    p = _tiny_profile()
    p["segmentation"]["scoring"] = {**p["segmentation"]["scoring"], "scores": ["ccfv", "nope"]}
    with pytest.raises(ValueError, match="unknown segmentation scores"):
        SS.scoring_section(p)
    p = _tiny_profile()
    p["segmentation"]["scoring"] = {**p["segmentation"]["scoring"], "layers": []}
    with pytest.raises(ValueError, match="at least one decoder block"):
        SS.scoring_section(p)

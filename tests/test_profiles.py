"""Profiles: both shipped profiles load and say what PROTOCOL.md and the quick budget need; the schema refuses
what it does not know and says where; values come back as written, each section's image size resolved."""
import copy
import json
import re

import pytest
import yaml

from helpers import profiles as P
from helpers.profiles import (ProfileError, finetune_grid, list_profiles, load_profile, profile_flags,
                              profile_image_size, profile_targets, resolve_profile)


def test_shipped_profiles():
    assert {"quick", "paper"} <= set(list_profiles())


def test_paper_profile_is_the_protocol():
    p = load_profile("paper")
    assert len(p["data"]["flags"]) == 12 and p["data"]["file_size"] == 224 and p["data"]["image_size"] == 224
    assert len(p["sources"]["dataset"]) == 15 and len(p["targets"]) == 11 and "chestmnist" not in p["targets"]
    assert len(p["sources"]["architectures"]) == 9
    assert p["data"]["folds"] == 5
    for target in p["targets"]:
        grid = finetune_grid(p, target)
        assert len(grid) == 120 and len({tuple(sorted(g.items())) for g in grid}) == 120
    assert {g["batch_size"] for g in finetune_grid(p, "breastmnist")} == {32, 64}
    assert p["finetuning"]["epochs"] == 200 and p["finetuning"]["patience"] == 50


def test_quick_profile_uses_available_flags(shared_data_root, tmp_path):
    q = load_profile("quick")
    assert profile_flags(q, shared_data_root) == ["breastmnist", "pneumoniamnist", "retinamnist"]
    assert profile_targets(q, shared_data_root) == ["breastmnist", "pneumoniamnist", "retinamnist"]
    # with only one flag present, only that one is used
    (tmp_path / "medmnist").mkdir()
    (tmp_path / "medmnist" / "breastmnist.npz").write_bytes(b"")
    assert profile_flags(q, tmp_path) == ["breastmnist"]


def test_bad_profiles(tmp_path):
    with pytest.raises(ProfileError, match="not found"):
        load_profile("nope")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\n")
    with pytest.raises(ProfileError, match="data: required key missing"):
        load_profile(bad)
    bad.write_text("name: x\ndata: {flags: [fakemnist], file_size: 28}\nsources: {}\ntargets: []\n"
                   "pretraining: {}\nfinetuning: {epochs: 1, grid: {lr: [0.1], batch_size: [8], momentum: [0.0], "
                   "weight_decay: [0.0]}}\nmetrics: []\ndevice: cpu\n")
    with pytest.raises(ProfileError, match=r"data\.flags\[0\]: Input should be 'pathmnist'.*\(got 'fakemnist'\)"):
        load_profile(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ProfileError, match="a profile is a YAML mapping"):
        load_profile(bad)


def _write(tmp_path, change, name="quick"):
    """The shipped profile ``name`` with ``change(raw)`` applied, written to a file: its path."""
    raw = yaml.safe_load(open(load_profile(name)["_path"]))
    change(raw)
    path = tmp_path / "changed.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("change, message", [
    # an unknown key, with the keys the mapping knows
    (lambda r: r["finetuning"].update(epoch=3), r"finetuning: unknown keys \['epoch'\] \(known: .*epochs,"),
    (lambda r: r["pretraining"]["union"].update(lr=0.1), r"pretraining\.union: unknown keys \['lr'\]"),
    (lambda r: r.update(colour="red"), r"profile: unknown keys \['colour'\]"),
    # a wrong type: no silent "3" -> 3, no bool for a number
    (lambda r: r["finetuning"].update(epochs="3"), r"finetuning\.epochs: Input should be a valid integer \(got '3'\)"),
    (lambda r: r["pretraining"]["single_dataset"]["optimizer"].update(lr=True),
     r"pretraining\.single_dataset\.optimizer\.lr: must be a number \(got True\)"),
    (lambda r: r["data"].update(only_available="yes"), r"data\.only_available: Input should be a valid boolean"),
    (lambda r: r.update(finetuning=3), r"finetuning: Input should be a valid dictionary \(got 3\)"),
    # a missing required key
    (lambda r: r.pop("device"), r"device: required key missing"),
    (lambda r: r["finetuning"]["grid"].pop("lr"), r"finetuning\.grid\.lr: required key missing"),
    # a bad value
    (lambda r: r["data"].update(file_size=32), r"data\.file_size: Input should be 28, 64, 128 or 224 \(got 32\)"),
    (lambda r: r["finetuning"]["grid"].update(lr=[0.1, -1]), r"finetuning\.grid\.lr\[1\]: must be positive"),
    (lambda r: r["finetuning"].update(image_size=0), r"finetuning\.image_size: .*greater than or equal to 1"),
    (lambda r: r.update(targets=["pathmnist"]),
     r"targets: every target must be among data\.flags \(got \['pathmnist'\]\)"),
    (lambda r: r["representations"].update(folds=[6]), r"representations\.folds: must be integers in 1\.\.5"),
    (lambda r: r["representations"]["freeze"].update(monitor="val_dice"), r"representations\.freeze\.monitor"),
    (lambda r: r["segmentation"].update(image_size=48), r"segmentation\.image_size: must be a positive multiple of 32"),
])
def test_errors_name_the_file_and_the_key(tmp_path, change, message):
    path = _write(tmp_path, change)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert text.startswith(f"{path}: invalid profile")
    assert re.search(message, text), text


def test_every_problem_is_reported_at_once(tmp_path):
    def change(raw):
        raw["finetuning"]["epochs"] = "3"
        raw["data"]["fold_seed"] = 1.5
        raw["scoring"] = {"image_size": 28, "batch": 3}

    text = str(pytest.raises(ProfileError, load_profile, _write(tmp_path, change)).value)
    assert "finetuning.epochs" in text and "data.fold_seed" in text and "scoring: unknown keys ['batch']" in text


def test_values_come_back_as_written(tmp_path):
    """Unit configs are hashed from profile values: what a profile writes comes back with its type (an int stays
    an int, 0.001 that float) and the sections copied whole into unit configs with exactly the keys written."""
    for name in ("quick", "paper"):
        profile = load_profile(name)
        raw = yaml.safe_load(open(profile["_path"]))
        for section in ("pretraining", "segmentation", "metrics", "targets", "name", "device"):
            assert json.dumps(profile[section], sort_keys=True) == json.dumps(raw[section], sort_keys=True)
        for section in ("data", "sources", "finetuning", "representations"):
            for key, value in raw[section].items():
                if isinstance(value, dict):
                    value = {**profile[section][key], **value}
                assert json.dumps(profile[section][key], sort_keys=True) == json.dumps(value, sort_keys=True)
    # an int written where a float is usual stays an int
    path = _write(tmp_path, lambda r: r["pretraining"]["single_dataset"]["optimizer"].update(lr=1))
    assert repr(load_profile(path)["pretraining"]["single_dataset"]["optimizer"]["lr"]) == "1"


def test_image_size_resolved_once_per_section():
    quick, paper = load_profile("quick"), load_profile("paper")
    assert {s: quick[s]["image_size"] for s in ("data", "finetuning", "scoring", "representations",
                                                 "segmentation")} == \
        {"data": 28, "finetuning": 28, "scoring": 28, "representations": 40, "segmentation": 64}
    # paper writes data's and the two sections of its own; finetuning and scoring inherit data's
    assert {s: paper[s]["image_size"] for s in ("data", "finetuning", "scoring", "representations",
                                                 "segmentation")} == \
        {"data": 224, "finetuning": 224, "scoring": 224, "representations": 224, "segmentation": 128}
    # pre-training recipes are hashed whole: their size is resolved by the rule, never written into them
    assert profile_image_size(quick, "pretraining.union") == 28
    assert profile_image_size(paper, "pretraining.union") == 224
    assert "image_size" not in paper["pretraining"] and "image_size" not in paper["pretraining"]["single_dataset"]
    for profile in (quick, paper):
        for section in ("data", "finetuning", "scoring", "representations", "segmentation"):
            assert profile_image_size(profile, section) == profile[section]["image_size"]


def test_image_size_rule():
    """The one rule, also for profiles built as dicts: a section's own value, else the one it inherits."""
    built = {"data": {"file_size": 64}, "pretraining": {"single_dataset": {"image_size": 32}},
             "finetuning": {}, "scoring": {"image_size": 56}}
    assert profile_image_size(built, "data") == 64  # the stored side
    assert profile_image_size(built, "pretraining.single_dataset") == 32
    assert profile_image_size(built, "pretraining.union") == 64
    built["pretraining"]["image_size"] = 48
    assert profile_image_size(built, "pretraining.union") == 48
    assert profile_image_size(built, "pretraining.single_dataset") == 32
    built["data"]["image_size"] = 40
    assert profile_image_size(built, "finetuning") == 40 and profile_image_size(built, "scoring") == 56
    assert profile_image_size(built, "representations") == 224  # [R]'s recipe, whatever data says
    with pytest.raises(KeyError, match="pretraining.unoin"):
        profile_image_size(built, "pretraining.unoin")
    resolved = resolve_profile({"name": "x", "data": {"flags": ["breastmnist"], "file_size": 64},
                                "sources": {"dataset": []}, "targets": ["breastmnist"], "pretraining": {},
                                "finetuning": {"epochs": 1, "max_train_images": 10,
                                               "grid": {"lr": [0.1], "batch_size": [8], "momentum": [0.0],
                                                        "weight_decay": [0.0]}},
                                "metrics": [], "device": "cpu"})
    assert resolved["data"]["image_size"] == resolved["finetuning"]["image_size"] == 64
    assert resolved["scoring"] == {"image_size": 64, "max_images": 10, "batch_size": 256, "metric_options": {}}
    assert resolved["finetuning"]["epochs_architectures"] == 1 and "segmentation" not in resolved


def test_loading_again_changes_nothing():
    for name in ("quick", "paper"):
        profile = load_profile(name)
        again = resolve_profile(copy.deepcopy(profile))
        assert json.dumps(again, sort_keys=True) == json.dumps({k: v for k, v in profile.items() if k != "_path"},
                                                               sort_keys=True)


def test_schema_names_what_the_library_knows():
    """The profile schema declares the names it accepts (profiles imports no stage): they are the library's."""
    from helpers import representations as R
    from helpers import similarity as S

    assert set(P.INPUT_SCALE_NAMES) == set(R.INPUT_SCALES)
    assert set(P.SIMILARITY_MEASURES) == set(S.MEASURES)
    assert tuple(P.RESNET_LAYERS) == tuple(S.RESNET_LAYERS) and tuple(P.SIMILARITY_NULLS) == tuple(R.NULLS)
    assert json.dumps(P.REPRESENTATIONS_DEFAULTS, sort_keys=True) == json.dumps(R.DEFAULTS, sort_keys=True)


def test_written_key_order_is_kept():
    """Sections copied into unit configs are flattened into the result tables' columns in their own key order,
    so the loader keeps the order the file wrote (pydantic alone dumps in the schema's field order)."""
    import yaml

    from helpers.profiles import PROFILES_DIR

    for name in ("quick", "paper"):
        written = yaml.safe_load((PROFILES_DIR / f"{name}.yml").read_text())
        loaded = load_profile(name)
        for section in ("pretraining", "segmentation"):
            if section in written:
                assert list(loaded[section])[:len(written[section])] == list(written[section])
        assert list(loaded["pretraining"]["single_dataset"]) == list(written["pretraining"]["single_dataset"])

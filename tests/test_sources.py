"""helpers.sources: the registry of source kinds, and what each kind resolves a source name to."""
from __future__ import annotations

import warnings

import pytest

from helpers import compat
from helpers import models as M
from helpers import sources as S


def _profile(**sources):
    return {"name": "t", "sources": {"dataset": ["random", "breastmnist"], **sources},
            "pretraining": {"architecture": "resnet18"}}


def test_every_name_has_the_kind_the_old_chains_gave_it():
    kinds = {s: S.source_kind(s).name for s in ["random", "imagenet", "radimagenet", "seg_busi", "seg_union",
                                                 "a/b/c.pt", "x.safetensors", "breastmnist", "medmnist_union"]}
    assert kinds == {"random": "random", "imagenet": "imagenet", "radimagenet": "radimagenet",
                     "seg_busi": "segmentation_encoder", "seg_union": "segmentation_encoder",
                     "a/b/c.pt": "checkpoint", "x.safetensors": "checkpoint", "breastmnist": "trained",
                     "medmnist_union": "trained"}
    assert list(S.source_kinds()) == ["random", "imagenet", "radimagenet", "segmentation_encoder", "checkpoint",
                                      "trained"]
    assert S.source_kind("seg_union").unit_name("seg_union", "t") == S.SEG_UNION_UNIT
    assert S.source_kind("medmnist_union").unit_name("medmnist_union", "pathmnist") == "medmnist_union__pathmnist"
    # which metrics apply: a segmentation encoder has no source head (no LEEP / NCE); a file decides for itself
    assert S.source_kind("seg_busi").source_head is False and S.source_kind("random").source_head is True
    assert S.source_kind("x.pt").source_head is None
    assert S.source_kind("imagenet").normalization == "imagenet" and S.source_kind("random").normalization == "half"
    model = S.source_kind("random").build("random", "resnet18")
    assert model.arch_name == "resnet18" and model.fc.out_features == 1000


def test_resolving_names_the_bad_source_and_where_its_weights_should_be(tmp_path, monkeypatch):
    monkeypatch.delenv("RADIMAGENET_CHECKPOINT", raising=False)
    p = _profile()
    assert S.resolve_source(p, "random", "breastmnist", tmp_path) == "random"
    with pytest.raises(M.SourceUnavailable, match="no trained checkpoint .*breastmnist.safetensors") as info:
        S.resolve_source(p, "breastmnist", "pneumoniamnist", tmp_path)
    assert info.value.source == "breastmnist"
    with pytest.raises(M.SourceUnavailable, match="no checkpoint configured"):
        S.resolve_source(p, "radimagenet", "breastmnist", tmp_path)
    with pytest.raises(M.SourceUnavailable, match="segmentation_sources/busi.safetensors"):
        S.resolve_source(p, "seg_busi", "breastmnist", tmp_path)

    trained = S.sources_dir(tmp_path) / "medmnist_union__breastmnist.safetensors"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"")
    assert S.resolve_source(p, "medmnist_union", "breastmnist", tmp_path) == str(trained)
    given = tmp_path / "mine.pt"
    given.write_bytes(b"")
    assert S.resolve_source(p, str(given), "breastmnist", tmp_path) == str(given)
    rad = tmp_path / "rad.pt"
    rad.write_bytes(b"")
    assert S.resolve_source(_profile(radimagenet_checkpoint=str(rad)), "radimagenet", None, tmp_path) == str(rad)


def test_plans_name_the_unit_that_makes_a_source_or_why_none_does():
    configs = [{"name": "breastmnist", "stage": "pretraining"}]
    p = _profile()
    assert S.source_plan(p, "random", "t", configs) == (None, None)
    key, reason = S.source_plan(p, "breastmnist", "t", configs)
    assert reason is None and key
    key, reason = S.source_plan(p, "pathmnist", "t", configs)
    assert key is None and "no pretraining unit makes pathmnist" in reason
    assert S.source_plan(p, "x.pt", "t", configs) == ("x.pt", None)
    bank = [{"name": "busi", "stage": "segmentation_pretraining"}]
    assert S.source_plan(p, "seg_busi", "t", configs, lambda: bank)[0]
    assert "makes no source 'kvasir_seg'" in S.source_plan(p, "seg_kvasir_seg", "t", configs, lambda: bank)[1]

    def no_bank():
        raise ValueError("no segmentation section")

    assert "has no segmentation bank" in S.source_plan(p, "seg_busi", "t", configs, no_bank)[1]


def test_registering_a_kind_and_unknown_names():
    with pytest.raises(ValueError, match="unknown source domain 'nope'"):
        S.register_source_kind("x", "nope")
    with pytest.raises(ValueError, match="no candidate source kind matches the source 'zzz'"):
        S.source_kind("zzz", S.CANDIDATE)
    import helpers.segmentation.training  # noqa: F401  (registers the bank's kinds)

    assert list(S.source_kinds(S.SEGMENTATION)) == ["random", "imagenet", "union", "set"]


def test_moved_names_warn_and_forward():
    import helpers.segmentation.training as ST
    from helpers.stages import segmentation as stage

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ST.run_segmentation_pretraining is stage.run_segmentation_pretraining
    assert caught and caught[0].category is DeprecationWarning
    assert "helpers.stages.segmentation" in str(caught[0].message)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        ST.nothing_here  # noqa: B018
    assert compat.MOVED["helpers.segmentation.training"]["run_segmentation_finetuning"] == "helpers.stages.segmentation"


def test_every_registered_kind_says_what_the_registry_asks_of_it():
    """The base class raises NotImplementedError for what a kind must say; no registered kind may leave a method
    to it that its domain calls (``planned``, the plan from the profile alone, is asked of classification
    sources only)."""
    import helpers.rank.candidates  # noqa: F401  (registers the candidate kinds)
    import helpers.segmentation.training  # noqa: F401  (registers the segmentation kinds)
    from helpers import sources as SRC

    for domain, kinds in SRC._KINDS.items():
        needed = ("matches", "weights", "planned") if domain == SRC.CLASSIFICATION else ("matches", "weights")
        for name, kind in kinds.items():
            left = [m for m in needed if getattr(type(kind), m) is getattr(SRC.SourceKind, m)]
            assert not left, f"{domain} kind {name!r} leaves {left} to the base class"
    for name, kind in SRC._KINDS[SRC.CANDIDATE].items():
        assert type(kind).build is not helpers.rank.candidates.CandidateKind.build, f"candidate {name!r} cannot build"

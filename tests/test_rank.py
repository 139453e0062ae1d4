"""helpers.rank: targets of every format, candidates of every kind, unavailable / error rows, the bootstrap
interval, the feature cache, bad input and the command. Real MedMNIST images (breastmnist, 28 px), few of them."""
import json
import sys
import urllib.error
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import models as M
from helpers import rank as R
from helpers.data import load_medmnist, paper_fold_indices
from helpers.metrics import knn_accuracy, linear_probe, lp
from helpers.rank import candidates as CA
from helpers.rank.__main__ import main as rank_main

FAST = ["knn_accuracy", "linear_probe", "lp", "fu", "leep", "logme", "ncti", "num_params", "imagenet_top1"]


@pytest.fixture(scope="module")
def breast(shared_data_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = load_medmnist("breastmnist", 28, root=shared_data_root)
    x, y = d.images["train"], d.labels["train"][:, 0]
    idx = np.concatenate([np.flatnonzero(y == 0)[:20], np.flatnonzero(y == 1)[:20]])
    return x[idx], y[idx]


@pytest.fixture
def npz_target(breast, tmp_path):
    path = tmp_path / "target.npz"
    np.savez(path, images=breast[0], labels=breast[1])
    return path


@pytest.fixture
def checkpoints(tmp_path):
    """A trained-source folder (safetensors + sidecar, as the Pretraining stage writes) and the same weights as
    a user's plain .pt state dict."""
    torch.manual_seed(1)
    model = M.build_model("resnet18", 2, "random", head="linear")
    src = tmp_path / "sources"
    M.save_checkpoint(model, src / "breastmnist", {"image_size": 28})
    torch.save(model.state_dict(), tmp_path / "colleague.pt")
    return src


def _offline(monkeypatch):
    import torchvision.models._api as api

    def fail(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", fail)
    monkeypatch.setattr(CA, "_UNAVAILABLE", {})


# ---------------------------------------------------------------------------------------------------------
# targets


def test_folder_target_mixes_modes_formats_and_sizes(breast, tmp_path):
    x, y = breast
    root = tmp_path / "folder"
    for k, name in enumerate(["benign", "malignant"]):
        (root / name).mkdir(parents=True)
        for i in np.flatnonzero(y == k)[:4]:
            im = Image.fromarray(x[i])
            im.save(root / name / f"{i}_gray.png")                                         # 8-bit gray PNG
            im.convert("RGB").resize((37, 23)).save(root / name / f"{i}_rgb.jpg", quality=95)  # RGB JPEG, odd size
            im.resize((45, 45)).save(root / name / f"{i}_gray.tif")                           # 8-bit TIFF
    (root / "benign" / "notes.txt").write_text("not an image")
    t = R.load_target(root)
    assert (t.kind, len(t), t.classes, t.multilabel) == ("folder", 24, ["benign", "malignant"], False)
    assert t.class_counts() == {"benign": 12, "malignant": 12}
    assert "8 colour (RGB)" in t.description and "16 grayscale" in t.description
    assert "1 non-image files ignored" in t.description and "different sizes" in t.description
    assert {im.shape for im in t.images} == {(28, 28, 3), (23, 37, 3), (45, 45, 3)}  # gray replicated
    ds = t.dataset(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "cpu")
    xb, yb = ds.batch(torch.arange(len(ds)))
    assert xb.shape == (24, 3, 32, 32) and torch.equal(yb, torch.as_tensor(t.labels))
    # a PNG at the input size goes through untouched: exactly (v / 255 - 0.5) / 0.5 of its pixels
    i = next(j for j, f in enumerate(t.files) if f.endswith("_gray.png"))
    same = t.dataset(28, (0.5,) * 3, (0.5,) * 3, "cpu").batch(torch.tensor([i]))[0][0, 0]
    raw = np.asarray(Image.open(t.files[i]), dtype=np.float32)
    assert torch.allclose(same, torch.from_numpy(raw / 255 * 2 - 1), atol=1e-6)
    # a stratified subset is drawn before decoding, seeded
    sub = R.load_target(root, max_images=10, seed=3)
    assert len(sub) == 10 and sub.class_counts() == {"benign": 5, "malignant": 5}
    assert sub.files == R.load_target(root, max_images=10, seed=3).files


def test_sixteen_bit_tiffs_share_one_scale_and_mixing_bit_depths_is_refused(tmp_path):
    root = tmp_path / "tiff16"
    for k in range(2):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(2):
            arr = np.full((20, 20), 1000 * (2 * k + i) + 500, dtype=np.uint16)
            Image.fromarray(arr).save(root / f"c{k}" / f"{i}.tif")
    t = R.load_target(root)
    assert "16/32-bit grayscale rescaled from [500, 3500]" in t.description
    assert [int(im[0, 0]) for im in t.images] == [0, 85, 170, 255]  # one scale over the whole target
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "c0" / "eight.png")
    with pytest.raises(R.TargetError, match=r"mixes 8-bit images \(e.g. .*eight.png\) with 16/32-bit"):
        R.load_target(root)


def test_npz_target_and_its_bad_forms(breast, tmp_path, npz_target):
    t = R.load_target(npz_target)
    assert (t.kind, len(t), t.classes) == ("npz", 40, ["0", "1"])
    x, y = breast
    cases = {
        "short.npz": (dict(images=x, labels=y[:-3]), "37 labels for 40 images"),
        "bool.npz": (dict(images=x > 0, labels=y), "dtype bool; expected uint8"),  # float is accepted (windowed)
        "single.npz": (dict(images=x, labels=np.zeros_like(y)), "single class"),
        "nolabels.npz": (dict(images=x), r"missing arrays \['labels'\]"),
        "gap.npz": (dict(images=x, labels=y * 2), r"class ids \[1\] have no image"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(R.TargetError, match=message) as info:
            R.load_target(tmp_path / name)
        assert name in str(info.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(R.TargetError, match="junk.npz: cannot be read"):
        R.load_target(tmp_path / "junk.npz")


def test_csv_multilabel_target(breast, tmp_path):
    x, y = breast
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(24):
        Image.fromarray(x[i]).save(tmp_path / "img" / f"{i}.png")
        rows.append({"path": f"img/{i}.png", "lesion": int(y[i]), "bright": int(x[i].mean() > x[:24].mean())})
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)
    t = R.load_target(tmp_path / "labels.csv")
    assert t.multilabel and t.labels.shape == (24, 2) and t.classes == ["lesion", "bright"]
    pd.DataFrame(rows).assign(path=lambda d: d["path"].str.replace("img/", "gone/")).to_csv(
        tmp_path / "bad.csv", index=False)
    with pytest.raises(R.TargetError, match="24 image paths do not exist"):
        R.load_target(tmp_path / "bad.csv")
    pd.DataFrame(rows).assign(bright=2).to_csv(tmp_path / "bad2.csv", index=False)
    with pytest.raises(R.TargetError, match=r"must hold 0 or 1 in every row; \['bright'\]"):
        R.load_target(tmp_path / "bad2.csv")


def test_medmnist_flag_target_is_the_fold1_subset(shared_data_root):
    t = R.load_target("breastmnist", max_images=30, data_root=shared_data_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = load_medmnist("breastmnist", 28, root=shared_data_root)
    idx = paper_fold_indices(len(d.labels["train"]), len(d.labels["val"]), d.n_classes, 1)[0][0][:30]
    assert np.array_equal(np.stack(t.images), d.images["train"][idx])
    assert np.array_equal(t.labels, d.labels["train"][idx, 0]) and t.classes == d.class_names
    test = R.load_target("breastmnist:test", data_root=shared_data_root)
    assert len(test) == len(d.labels["test"]) and test.name == "breastmnist:test"
    with pytest.raises(R.TargetError, match="split 'tset'"):
        R.load_target("breastmnist:tset", data_root=shared_data_root)
    with pytest.raises(R.TargetError, match="did you mean breastmnist"):
        R.load_target("breastmnst")


def test_bad_folders_name_the_problem(breast, tmp_path):
    x, y = breast
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(R.TargetError, match="has no class sub-folders"):
        R.load_target(empty)
    one = tmp_path / "one"
    (one / "benign").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(x[i]).save(one / "benign" / f"{i}.png")
    with pytest.raises(R.TargetError, match="single class"):
        R.load_target(one)
    (one / "malignant").mkdir()
    with pytest.raises(R.TargetError, match="class folder .*malignant holds no images"):
        R.load_target(one)
    Image.fromarray(x[5]).save(one / "malignant" / "5.png")
    with pytest.raises(R.TargetError, match=r"fewer than 2 images"):
        R.load_target(one)
    (one / "malignant" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(R.TargetError, match=r"image .*broken.png cannot be read"):
        R.load_target(one)
    with pytest.raises(R.TargetError, match="does not exist"):
        R.load_target(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------------------
# candidates


def test_candidate_names_parse_and_typos_suggest(checkpoints, tmp_path):
    c = R.parse_candidate("resnet50")
    assert (c.kind, c.arch, c.weights) == ("torchvision", "resnet50", "IMAGENET1K_V2")  # torchvision's default
    assert R.parse_candidate("resnet50:IMAGENET1K_V1").weights == "IMAGENET1K_V1"
    assert R.parse_candidate("vgg11:random@64").image_size == 64
    c = R.parse_candidate(f"resnet18:{tmp_path / 'colleague.pt'}@28")
    assert (c.kind, c.arch, c.name) == ("checkpoint", "resnet18", "resnet18:colleague.pt@28")
    assert R.parse_candidate("breastmnist", checkpoints).kind == "source"
    assert R.parse_candidate("timm:convnext_tiny:random").weights == "random"
    for bad, hint in [("resnet181:random", "resnet18"), ("resnt50", "resnet50"), ("densenet12", "densenet121")]:
        with pytest.raises(R.CandidateError, match=f"did you mean {hint}"):
            R.parse_candidate(bad, checkpoints)
    with pytest.raises(R.CandidateError, match="has no weights 'IMAGENET1K_V9'"):
        R.parse_candidate("resnet18:IMAGENET1K_V9")
    with pytest.raises(R.CandidateError, match="listed twice"):
        R.parse_candidates("resnet18:random,resnet18:random")
    # input conventions: ImageNet weights -> their own transforms; sources -> their sidecar; else 0.5/0.5, 224
    assert R.preprocessing(R.parse_candidate("efficientnet_v2_s"))["image_size"] == 384
    assert R.preprocessing(R.parse_candidate("resnet18"))["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert R.preprocessing(R.parse_candidate("breastmnist", checkpoints)) == {
        "image_size": 28, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert R.preprocessing(R.parse_candidate("resnet18:random"))["image_size"] == 224
    assert R.preprocessing(R.parse_candidate("resnet18:random@40"), image_size=64)["image_size"] == 40
    assert CA.imagenet_top1(R.parse_candidate("resnet18")) == pytest.approx(69.758)  # offline metadata


def test_every_candidate_kind_with_unavailable_and_error_rows(npz_target, checkpoints, tmp_path, monkeypatch):
    _offline(monkeypatch)
    monkeypatch.setitem(sys.modules, "timm", None)  # timm not installed
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "corrupt.pt").write_bytes(b"garbage")
    cands = ["breastmnist", f"resnet18:{tmp_path / 'colleague.pt'}@28", "resnet18:random@28",
             str(checkpoints / "breastmnist.safetensors"), "resnet18", "timm:resnet18",
             f"resnet18:{tmp_path / 'corrupt.safetensors'}", f"resnet18:{tmp_path / 'corrupt.pt'}",
             f"resnet34:{tmp_path / 'colleague.pt'}", f"resnet18:{tmp_path / 'missing.pt'}"]
    res = R.rank_models(npz_target, cands, metrics=FAST, sources_dir=checkpoints, n_boot=20, device="cpu",
                        progress=False)
    t = res.table
    assert list(t.columns) == R.COLUMNS
    status = res.candidates.set_index("candidate")["status"].to_dict()
    assert status == {"breastmnist": "ok", cands[1]: "ok", "resnet18:random@28": "ok", cands[3]: "ok",
                      "resnet18": "unavailable", "timm:resnet18": "unavailable", cands[6]: "error",
                      cands[7]: "error", cands[8]: "error", cands[9]: "unavailable"}
    reasons = res.candidates.set_index("candidate")["reason"]
    assert "no network" in reasons["resnet18"] and "resnet18-f37072fd.pth" in reasons["resnet18"]
    assert "pip install .[timm]" in reasons["timm:resnet18"]
    assert "does not fit resnet34" in reasons[cands[8]] and "does not exist" in reasons[cands[9]]
    # one row per (candidate, metric) plus the recommendation, every failing candidate with its reason
    metrics = FAST + ["lp_fu"]
    assert len(t) == len(cands) * (len(metrics) + 1)
    assert set(t.groupby("candidate").size()) == {len(metrics) + 1}
    bad = t[t["candidate"].isin([c for c, s in status.items() if s != "ok"])]
    assert set(bad["status"]) == {"unavailable", "error"} and (bad["reason"] != "").all()
    # the same weights as a sidecar'd source, a safetensors path and a .pt with its architecture: same scores
    ok = t[(t["status"] == "ok") & (t["metric"].isin(["knn_accuracy", "linear_probe", "lp", "fu", "logme"]))]
    w = ok.pivot_table(index="metric", columns="candidate", values="score")
    assert np.allclose(w["breastmnist"], w[cands[1]]) and np.allclose(w["breastmnist"], w[cands[3]])
    # ranks are direction-aware, 1 = best; the recommendation has an interval and P(first) summing to 1
    logme = t[(t["metric"] == "logme") & (t["status"] == "ok")]
    assert logme.sort_values("score", ascending=False)["rank"].iloc[0] == logme["rank"].min()
    rec = res.recommendation[res.recommendation["status"] == "ok"]
    assert len(rec) == 4 and rec["p_first"].sum() == pytest.approx(1.0)
    assert (rec["rank_low"] <= rec["rank"]).all() and (rec["rank"] <= rec["rank_high"]).all()
    assert set(t.loc[(t["metric"] == "imagenet_top1") & (t["status"] == "ok"), "candidate"]) == set()
    assert t.loc[t["metric"] == "num_params", "score"].dropna().eq(11176512).all()
    fu = t[(t["metric"] == "fu") & (t["status"] == "ok")]
    assert (fu["reason"].str.contains("conv1, layer1.0.conv1")).all()


def test_multilabel_ranking_uses_only_the_metrics_that_support_it(breast, tmp_path):
    x, y = breast
    labels = np.stack([y, (x.reshape(len(x), -1).mean(1) > x.mean()).astype(int)], 1)
    np.savez(tmp_path / "ml.npz", images=x, labels=labels)
    res = R.rank_models(tmp_path / "ml.npz", ["resnet18:random@28", "mobilenet_v3_small:random@32"],
                        metrics=["logme", "leep", "knn_accuracy", "linear_probe", "fu"],
                        recommend=["knn_accuracy", "linear_probe"], n_boot=10, device="cpu", progress=False)
    st = res.table.pivot_table(index="metric", columns="name", values="status", aggfunc="first")
    assert (st.loc[["logme", "knn_accuracy", "linear_probe", "recommendation"]] == "ok").all().all()
    assert (st.loc[["leep", "fu"]] == "skipped").all().all()
    assert res.candidates.set_index("name").loc["mobilenet_v3_small:random@32", "feature_dim"] == 576  # [D]'s layer


def test_timm_random_model_when_installed(npz_target):
    pytest.importorskip("timm")
    res = R.rank_models(npz_target, ["timm:resnet18:random@28", "resnet18:random@28"],
                        metrics=["knn_accuracy", "fu", "num_params"], recommend=["knn_accuracy"], n_boot=5,
                        device="cpu", progress=False)
    assert (res.candidates["status"] == "ok").all()
    fu = res.table[(res.table["metric"] == "fu")].set_index("name")
    assert fu.loc["timm:resnet18:random@28", "status"] == "ok"  # the first two Conv2d: conv1, layer1.0.conv1


# ---------------------------------------------------------------------------------------------------------
# interval and cache


def _scores_fn(features: dict, labels):
    terms = {m: {c: fn(X, labels, per_sample=True).numpy() for c, X in features.items()}
             for m, fn in (("knn_accuracy", knn_accuracy), ("linear_probe", linear_probe), ("lp", lp))}
    return lambda idx: {m: {c: float(np.nanmean(t[idx])) for c, t in by_c.items()} for m, by_c in terms.items()}


def test_per_sample_terms_average_to_the_metric():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    X = torch.randn(60, 8, generator=g, dtype=torch.float64) + y[:, None]
    for fn in (knn_accuracy, linear_probe, lp):
        terms = fn(X, y, per_sample=True)
        assert terms.shape == (60,) and float(terms.mean()) == pytest.approx(fn(X, y), abs=1e-12)


def test_bootstrap_dominant_candidate_is_first_and_identical_ones_split_evenly():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(80) % 2
    noise = lambda: torch.randn(80, 16, generator=g, dtype=torch.float64)  # noqa: E731
    feats = {"good": noise() * 0.1 + 3 * y[:, None], "bad1": noise(), "bad2": noise()}
    reps = R.bootstrap_ranks(_scores_fn(feats, y), list(feats), 60, 0, y.numpy())
    first = reps[reps["metric"] == R.RECOMMENDATION].groupby("candidate")["rank"].apply(lambda r: (r == 1).mean())
    assert first["good"] == 1.0
    same = {c: feats["bad1"] for c in ("a", "b", "c")}
    reps = R.bootstrap_ranks(_scores_fn(same, y), list(same), 300, 0, y.numpy())
    first = reps[reps["metric"] == R.RECOMMENDATION].groupby("candidate")["rank"].apply(lambda r: (r == 1).mean())
    assert first.sum() == pytest.approx(1.0) and (first.between(0.22, 0.45)).all(), first.to_dict()


def test_cache_makes_a_rerun_skip_models_and_extraction(npz_target, checkpoints, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cands = ["breastmnist", "resnet18:random@28"]
    kw = dict(metrics=["knn_accuracy", "lp", "fu", "num_params"], sources_dir=checkpoints, n_boot=10,
              device="cpu", cache_dir=cache, progress=False)
    first = R.rank_models(npz_target, cands, **kw)
    assert not first.candidates["cached"].any() and len(list(cache.iterdir())) == 2

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(M, "extract", boom)
    monkeypatch.setattr(CA, "build_model", boom)
    again = R.rank_models(npz_target, cands, **kw)
    assert again.candidates["cached"].all()
    pd.testing.assert_series_equal(first.table["score"], again.table["score"])
    assert again.table.loc[again.table["metric"] == "fu", "reason"].str.endswith("(cached)").all()
    # another input size is another entry, computed (and here refused by the patched extract)
    other = R.rank_models(npz_target, ["resnet18:random@32"], **kw)
    assert other.candidates["status"].iloc[0] == "error" and "recomputed" in other.candidates["reason"].iloc[0]


def test_identical_candidates_share_first_place(npz_target, checkpoints, tmp_path):
    res = R.rank_models(npz_target, ["breastmnist", f"resnet18:{tmp_path / 'colleague.pt'}@28"],
                        metrics=["knn_accuracy", "linear_probe"], recommend=["knn_accuracy", "linear_probe"],
                        sources_dir=checkpoints, n_boot=200, device="cpu", progress=False)
    rec = res.recommendation
    assert (rec["rank"] == 1.5).all() and rec["p_first"].between(0.35, 0.65).all()


# ---------------------------------------------------------------------------------------------------------
# the command


def test_command_writes_the_tables_and_refuses_bad_input_with_status_2(npz_target, checkpoints, tmp_path, capsys):
    out = tmp_path / "out" / "ranking.csv"
    code = rank_main(["--target", str(npz_target), "--candidates", "breastmnist,resnet18:random@28",
                      "--sources-dir", str(checkpoints), "--out", str(out), "--metrics", "knn_accuracy,lp,fu",
                      "--n-boot", "5", "--device", "cpu", "--quiet"])
    assert code == 0
    table = pd.read_csv(out)
    # the default recommendation's metrics are added to the ones asked for
    assert set(table["metric"]) == {"knn_accuracy", "lp", "fu", "lp_fu", "recommendation", *R.DEFAULT_RECOMMEND}
    assert (out.parent / "rank_cache").is_dir() and (out.parent / "ranking_candidates.csv").is_file()
    saved = json.loads((out.parent / "ranking_target.json").read_text())
    assert saved["images"] == 40
    # the written settings and the printout say which evidence the default rests on
    assert saved["settings"]["recommend_basis"]["content_sha256"] == R.EVIDENCE["content_sha256"]
    printed = capsys.readouterr().out
    assert "recommended:" in printed and R.EVIDENCE["content_sha256"] in printed
    base = {"--target": str(npz_target), "--candidates": "resnet18:random", "--out": str(out)}
    for change, message in [({"--candidates": "resnet181:random"}, "unknown torchvision architecture 'resnet181'"),
                            ({"--metrics": "logmee"}, "did you mean logme"),
                            ({"--target": str(tmp_path / "nothing")}, "does not exist")]:
        argv = [a for k, v in {**base, **change}.items() for a in (k, v)] + ["--quiet"]
        assert rank_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_segmentation_encoder_candidate_ranks_without_source_head_metrics(npz_target, checkpoints, tmp_path):
    """``seg_<set>`` names an encoder of the segmentation bank (results/<profile>/segmentation_sources): it is
    ranked on its encoder's features, and the source-head metrics (LEEP) are skipped with the reason."""
    from helpers.segmentation.model import UNet, save_segmentation_checkpoint

    torch.manual_seed(2)
    save_segmentation_checkpoint(UNet(2, decoder_channels=(32, 16, 16, 8, 8)),
                                 checkpoints.parent / "segmentation_sources" / "busi", {"image_size": 64})
    res = R.rank_models(npz_target, ["seg_busi@28", "breastmnist@28"], metrics=["knn_accuracy", "leep", "logme"],
                        sources_dir=checkpoints, n_boot=5, device="cpu", progress=False)
    t = res.table.set_index(["candidate", "metric"])
    assert t.loc[("seg_busi@28", "knn_accuracy"), "status"] == "ok"
    assert t.loc[("seg_busi@28", "leep"), "status"] == "skipped"
    assert "no classification head" in t.loc[("seg_busi@28", "leep"), "reason"]
    assert t.loc[("breastmnist@28", "leep"), "status"] == "ok"


# ---------------------------------------------------------------------------------------------------------
# the order of the files


def _csv_of(folder, rows, path):
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(path, index=False)
    return path


def test_ranking_does_not_depend_on_the_order_of_the_files(shared_data_root, checkpoints, tmp_path):
    """BUSI's train images as a class-sorted folder, a class-sorted CSV and a shuffled CSV: identical scores,
    ranks and recommendation, bit for bit. Before the canonical order, FU's consecutive batches of the sorted
    target held one class each (no valid triplet) and its value moved with the order."""
    folder = R.write_busi_folder(tmp_path / "busi", root=shared_data_root)
    rows = [(str(f), d.name) for d in sorted(folder.iterdir()) for f in sorted(d.iterdir())]
    sorted_csv = _csv_of(folder, rows, tmp_path / "sorted.csv")
    rng = np.random.default_rng(7)
    shuffled_csv = _csv_of(folder, [rows[i] for i in rng.permutation(len(rows))], tmp_path / "shuffled.csv")
    cands = ["resnet18:random@28", str(checkpoints / "breastmnist.safetensors")]
    metrics = ["knn_accuracy", "linear_probe", "lp", "fu", "logme", "leep"]
    results = [R.rank_models(t, cands, metrics=metrics, n_boot=20, device="cpu", progress=False, max_images=None)
               for t in (folder, sorted_csv, shuffled_csv)]
    key = ["candidate", "metric"]
    tables = [r.table.sort_values(key).reset_index(drop=True) for r in results]
    for t in tables[1:]:
        pd.testing.assert_series_equal(tables[0]["score"], t["score"], check_exact=True)
        pd.testing.assert_series_equal(tables[0]["rank"], t["rank"], check_exact=True)
        assert (tables[0]["status"] == t["status"]).all()
    assert (tables[0]["status"] == "ok").all()
    recs = [r.recommendation[["candidate", "score", "rank", "p_first"]].reset_index(drop=True) for r in results]
    for rec in recs[1:]:
        pd.testing.assert_frame_equal(recs[0], rec, check_exact=True)
    assert not results[0].reduced
    # the defect this guards against: FU on consecutive batches of the class-sorted images
    t = R.load_target(folder)
    assert (np.diff(t.labels) >= 0).all()  # the folder is read class by class
    model = M.penultimate_model(CA.build_model(CA.parse_candidate("resnet18:random@28"), 0))
    ds = t.dataset(28, (0.5,) * 3, (0.5,) * 3, "cpu")
    x, _ = ds.batch(torch.arange(len(ds)))
    from helpers.metrics import fu

    perm = torch.as_tensor(rng.permutation(len(ds)))
    y = torch.as_tensor(t.labels)
    given = fu(model, "conv1", "layer1.0.conv1", x, y, batching="given")
    mixed = fu(model, "conv1", "layer1.0.conv1", x[perm], y[perm], batching="given")
    assert abs(given - mixed) > 1e-3


def test_a_failed_recommendation_metric_marks_the_recommendation_reduced(npz_target, checkpoints, capsys):
    """FU needs two images per batch: on 8 images it fails for every candidate, LP x FU drops out of the
    recommendation, and the result and the command say so."""
    recommend = ["lp_fu", "knn_accuracy", "linear_probe"]  # a user's choice that holds LP x FU
    res = R.rank_models(npz_target, ["resnet18:random@28", str(checkpoints / "breastmnist.safetensors")],
                        metrics=["knn_accuracy", "linear_probe", "lp", "fu"], recommend=recommend, n_boot=5,
                        device="cpu", progress=False, max_images=8)
    assert res.settings["recommend_basis"] == {"source": "user's choice"}
    assert "lp_fu" in res.reduced and "failed for every candidate" in res.reduced["lp_fu"]
    ok = res.recommendation[res.recommendation.status == "ok"]
    assert len(ok) == 2 and ok["reason"].str.startswith("reduced: ").all()
    code = rank_main(["--target", str(npz_target), "--candidates", "resnet18:random@28", "--max-images", "8",
                      "--metrics", "knn_accuracy,linear_probe,lp,fu", "--recommend", ",".join(recommend),
                      "--n-boot", "0", "--quiet", "--cache-dir", "none", "--out", str(npz_target.parent / "out.csv")])
    err = capsys.readouterr().err
    assert code == 0 and "warning: the recommendation is reduced: lp_fu" in err
    # one candidate, 4 images a class: both said, and the target file holds JSON, not JSON in a string
    assert "only 1 candidate could be ranked" in err and "few images in" in err
    saved = json.loads((npz_target.parent / "out_target.json").read_text())
    assert isinstance(saved["classes"], dict) and saved["warnings"] and "lp_fu" in saved["reduced"]
    assert saved["settings"]["recommend_basis"]["source"] == "user's choice"


def test_verdict_agrees_with_the_bootstrap():
    rec = pd.DataFrame({"name": ["a", "b", "c"], "status": "ok", "rank": [1.0, 2.0, 3.0],
                        "p_first": [0.30, 0.63, 0.07], "rank_low": [1.0, 1.0, 2.0], "rank_high": [3.0, 2.0, 3.0]})
    res = R.RankResult(pd.DataFrame(), pd.DataFrame(), rec, pd.DataFrame(), {})
    v = res.verdict()
    assert "`a` has the best mean rank" in v and "`b` is first more often (63%)" in v
    assert "`a`, `b` all include first place" in v
    clear = R.RankResult(pd.DataFrame(), pd.DataFrame(), rec.assign(p_first=[0.9, 0.1, 0.0], rank_low=[1., 2, 2]),
                         pd.DataFrame(), {})
    assert "only candidate whose rank interval includes first place" in clear.verdict()
    assert "more often" not in clear.verdict()


def test_a_subset_of_a_reordered_target_is_the_same_subset(breast, tmp_path):
    from helpers.rank.order import canonicalize

    x, y = breast
    perm = np.random.default_rng(3).permutation(len(y))
    np.savez(tmp_path / "a.npz", images=x, labels=y)
    np.savez(tmp_path / "b.npz", images=x[perm], labels=y[perm])
    a, b = (canonicalize(R.load_target(tmp_path / f, max_images=12, seed=1)) for f in ("a.npz", "b.npz"))
    assert a.fingerprint == b.fingerprint and len(a) == 12
    for name, order in (("a.csv", np.arange(len(y))), ("b.csv", perm)):
        for i in order:
            Image.fromarray(x[i]).save(tmp_path / f"{i}.png")
        pd.DataFrame({"path": [f"{i}.png" for i in order], "label": y[order]}).to_csv(tmp_path / name, index=False)
    a, b = (canonicalize(R.load_target(tmp_path / f, max_images=12, seed=1)) for f in ("a.csv", "b.csv"))
    assert a.fingerprint == b.fingerprint

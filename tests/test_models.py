"""Model zoo, heads, safe checkpoints, feature extraction."""
import pickle
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn as nn

from helpers import models as M
from helpers.data import TensorImageDataset


def test_zoo_fu_layers_resolve_to_convolutions():
    for name, spec in M.ARCHITECTURES.items():
        with torch.device("meta"):
            model = M._random_model(name, 10)
        first, second = M.fu_layers(model)
        assert isinstance(first, nn.Conv2d) and isinstance(second, nn.Conv2d), name
        assert M.last_linear(model) is M.last_linear(M.get_submodule(model, spec.head)), name


def test_feature_width_per_architecture_as_D_takes_it():
    """The penultimate features are the input [D]'s transferability_scores.py hooks: mobilenet_v3_small's 576-d
    classifier input (not the 1024-d input of its last Linear), efficientnet's input to the dropout+Linear."""
    assert set(M.FEATURE_WIDTHS) == set(M.ARCHITECTURES)
    for name, width in M.FEATURE_WIDTHS.items():
        torch.manual_seed(0)
        model = M._random_model(name, 7).eval()
        seen = {}
        feat = M.get_submodule(model, M.feature_path(model))
        hook = feat.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0]))
        with torch.no_grad():
            logits = model(torch.randn(2, 3, 64, 64))
        hook.remove()
        assert seen["x"].flatten(1).shape == (2, width), name
        assert logits.shape == (2, 7), name
        with torch.no_grad():
            emb = M.penultimate_model(model)(torch.randn(2, 3, 64, 64))
        assert emb.flatten(1).shape == (2, width), name  # what FU's triplet loss sees


def test_architecture_heads_replace_what_D_replaces():
    """Architecture transfer: [D] replaces efficientnet_v2_s's whole classifier (its dropout goes) and the last
    Linear elsewhere (mobilenet_v3_small keeps its 576->1024 block)."""
    eff = M.replace_head(M._random_model("efficientnet_v2_s"), 3, "linear")
    assert isinstance(eff.classifier, nn.Linear) and eff.classifier.in_features == 1280
    mob = M.replace_head(M._random_model("mobilenet_v3_small"), 3, "linear")
    assert isinstance(mob.classifier, nn.Sequential) and mob.classifier[3].out_features == 3
    assert mob.classifier[0].in_features == 576


def test_heads_and_penultimate():
    torch.manual_seed(0)
    m = M.build_model("resnet18", 3, "random", head="dropout_linear")
    assert isinstance(m.fc, nn.Sequential) and isinstance(m.fc[0], nn.Dropout) and m.fc[1].out_features == 3
    m2 = M.build_model("resnet18", 4, "random", head="linear")
    assert isinstance(m2.fc, nn.Linear) and m2.fc.out_features == 4
    pen = M.penultimate_model(m)
    assert isinstance(pen.fc, nn.Identity) and isinstance(m.fc, nn.Sequential)  # original untouched
    m.eval(), pen.eval()
    x = torch.randn(2, 3, 32, 32)
    assert pen(x).shape == (2, 512)
    torch.testing.assert_close(m.fc[1](pen(x)), m(x))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    m = M.build_model("resnet18", 5, "random")
    m.eval()
    x = torch.randn(3, 3, 32, 32)
    path = M.save_checkpoint(m, tmp_path / "src", {"classes": list("abcde"), "data_md5": {"f": "0"}})
    assert path.suffix == ".safetensors" and M.sidecar_path(path).is_file()
    meta = M.read_sidecar(path)
    assert meta["architecture"] == "resnet18" and meta["classes"] == list("abcde") and meta["num_outputs"] == 5
    back = M.load_checkpoint(path).eval()
    torch.testing.assert_close(back(x), m(x))
    # as a source for fine-tuning: backbone kept, new head
    ft = M.build_model("resnet18", 2, path, head="linear").eval()
    torch.testing.assert_close(M.penultimate_model(ft)(x), M.penultimate_model(m)(x))
    assert ft.fc.out_features == 2


def test_user_pt_checkpoint_loads_with_weights_only(tmp_path):
    m = M.build_model("resnet18", 165, "random", head="linear")
    torch.save({"state_dict": {f"module.{k}": v for k, v in m.state_dict().items()}}, tmp_path / "radimagenet.pt")
    back = M.load_source(tmp_path / "radimagenet.pt", "resnet18")
    assert back.fc.out_features == 165
    torch.testing.assert_close(back.conv1.weight, m.conv1.weight)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))  # unpickling would create (truncate) a file


def test_pickled_checkpoint_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"state_dict": {"conv1.weight": _Evil(str(marker))}}, fh)
    with pytest.raises(M.UnsafeCheckpointError):
        M.load_source(evil, "resnet18")
    assert not marker.exists()
    # torch.save'd too (zip format)
    evil2 = tmp_path / "evil2.pt"
    torch.save({"x": _Evil(str(marker))}, evil2)
    with pytest.raises(M.UnsafeCheckpointError):
        M.read_state_dict(evil2)
    assert not marker.exists()


def test_imagenet_unavailable_offline(monkeypatch):
    import torchvision.models._api as api

    def fail(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", fail)
    with pytest.raises(M.SourceUnavailable) as info:
        M.build_model("resnet18", 2, "imagenet")
    assert info.value.source == "imagenet" and "no network" in info.value.reason


def test_missing_checkpoint_is_unavailable(tmp_path):
    with pytest.raises(M.SourceUnavailable):
        M.build_model("resnet18", 2, tmp_path / "nope.safetensors")


def test_extract_matches_model():
    torch.manual_seed(0)
    m = M.build_model("resnet18", 3, "random")
    rng = np.random.default_rng(0)
    ds = TensorImageDataset(rng.integers(0, 256, (10, 12, 12), dtype=np.uint8), rng.integers(0, 3, 10), 16,
                            device="cpu")
    feats, logits, labels = M.extract(m, ds, batch_size=4)
    assert feats.shape == (10, 512) and logits.shape == (10, 3) and labels.shape == (10,)
    assert feats.dtype == torch.float32 and logits.dtype == torch.float32
    assert m.training  # mode restored
    m.eval()
    x, _ = ds.batch(torch.arange(10))
    with torch.no_grad():
        torch.testing.assert_close(logits, m(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(feats, M.penultimate_model(m)(x), rtol=1e-4, atol=1e-4)


def _real_breast_dataset(n=48):
    from helpers.data import load_medmnist

    d = load_medmnist("breastmnist", size=28)
    return TensorImageDataset.from_medmnist(d, "train", image_size=28, indices=np.arange(n), device="cpu")


def test_extract_is_full_precision_by_default():
    """Features that feed a metric come from a plain float32 forward; the bf16 autocast path (speed only) is
    an explicit argument and gives measurably different features."""
    torch.manual_seed(0)
    m = M.build_model("resnet18", 2, "random").eval()
    ds = _real_breast_dataset()
    x, _ = ds.batch(torch.arange(len(ds)))
    with torch.no_grad():
        ref_logits = m(x)
        ref_feats = M.penultimate_model(m)(x)
    feats, logits, _ = M.extract(m, ds, batch_size=16)
    torch.testing.assert_close(feats, ref_feats, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-6)
    bf_feats, bf_logits, _ = M.extract(m, ds, batch_size=16, autocast="cpu")
    rel = float((bf_feats - ref_feats).norm() / ref_feats.norm())
    assert rel > 1e-3, rel  # bf16 keeps 8 mantissa bits: features move by about a percent
    assert bf_feats.dtype == torch.float32


def test_extract_restores_precision_flags_and_runs_half_models_in_float32():
    torch.manual_seed(0)
    m = M.build_model("resnet18", 2, "random").eval()
    ds = _real_breast_dataset(8)
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
              torch.get_float32_matmul_precision())
    ref, _, _ = M.extract(m, ds)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
            torch.get_float32_matmul_precision()) == before
    with M.full_precision():
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    half = M.build_model("resnet18", 2, "random")
    half.load_state_dict(m.state_dict())
    half = half.to(torch.bfloat16)
    feats, _, _ = M.extract(half, ds)
    assert next(half.parameters()).dtype == torch.bfloat16  # the caller's model is left alone
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()


def test_segmentation_unet_encoder_as_a_classifier_source(tmp_path):
    """A segmentation U-Net checkpoint loads as a ResNet-18 classifier on its encoder (no source head)."""
    from helpers.segmentation.model import UNet, save_segmentation_checkpoint

    torch.manual_seed(3)
    unet = UNet(3, decoder_channels=(32, 16, 16, 8, 8)).eval()
    path = save_segmentation_checkpoint(unet, tmp_path / "seg_src", {"source": "busi"})
    assert not M.has_source_head(path) and M.has_source_head("random")
    clf = M.load_source(path).eval()
    assert clf.has_source_head is False
    for name, p in clf.named_parameters():
        if not name.startswith("fc."):
            torch.testing.assert_close(p, unet.state_dict()[f"encoder.{name}"])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled = unet.encode(x)[4].mean(dim=(2, 3))
        torch.testing.assert_close(M.penultimate_model(clf)(x), pooled)
    ft = M.build_model("resnet18", 2, path)  # fine-tuning: a fresh Dropout + Linear head on the encoder
    assert ft.fc[1].out_features == 2
    torch.testing.assert_close(ft.layer4[1].conv2.weight, unet.encoder["layer4"][1].conv2.weight)


def test_offline_imagenet_attempt_prints_no_download_line(monkeypatch, tmp_path, capfd):
    """torch.hub writes `Downloading: "<url>" to <path>` to stdout before trying; offline that line (with the
    builder's home path) leaked into the book. It is dropped, the failure is still raised, other output kept."""
    import socket

    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(*a, **k):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(M.SourceUnavailable):
        M.build_model("resnet18", 2, "imagenet")
    with M.quiet_hub_download():
        print("kept line")
    out = capfd.readouterr().out
    assert "Downloading" not in out and str(tmp_path) not in out
    assert "kept line" in out

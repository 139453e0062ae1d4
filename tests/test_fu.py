"""Tests of helpers.metrics.fu: the reference fixture, class-stratified batching, micro-batched gradients,
lazily loaded images, side effects and bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import helpers.metrics as M
from helpers.metrics.fu import BATCHING, fu, fu_batches

torchvision = pytest.importorskip("torchvision")

LAYERS = ("conv1", "layer1.0.conv1")


@pytest.fixture(scope="module")
def fixture_case(metric_fixtures):
    from safetensors.torch import load_file

    e = json.loads((metric_fixtures / "fu_expected.json").read_text())
    (key, info), = e.items()
    model = getattr(torchvision.models, info["architecture"])(num_classes=info["source_classes"])
    model.load_state_dict(load_file(metric_fixtures / info["weights"]))
    setattr(model, info["head_removed"], torch.nn.Identity())
    with np.load(metric_fixtures / f"{key}.npz", allow_pickle=False) as d:
        images, labels = d["images"], d["labels"]
    return model, images, labels, info


def resnet18(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    m = torchvision.models.resnet18()
    m.fc = torch.nn.Identity()
    return m.to(dtype)


def data(n=60, classes=3, size=16, seed=0, sorted_=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    if sorted_:
        y = torch.sort(y).values
    x = torch.randn(n, 3, size, size, generator=g) + 0.3 * y[:, None, None, None]
    return x, y


def state(model):
    cd = torch.backends.cudnn
    return (model.training, [p.requires_grad for p in model.parameters()],
            [p.grad is None for p in model.parameters()], (cd.enabled, cd.deterministic, cd.benchmark))


@pytest.mark.parametrize("micro_batch", [None, 16, 7])
def test_fixture_fu(fixture_case, micro_batch):
    """The reference value ([D]'s code: consecutive batches in the stored order) with batching="given", on the
    single-pass path and micro-batched (7 divides none of the batch sizes 33 and 2)."""
    model, images, labels, info = fixture_case
    model.train()
    for p in model.parameters():
        p.grad = None
    before = state(model)
    # bracket form of PROTOCOL.md section 3 and dotted form name the same layers
    value = M.fu(model, "conv1[0]", "stage2[0].branch1[0]", images, labels, batching="given",
                 micro_batch=micro_batch)
    assert abs(value - info["fu"]) < 0.01
    assert state(model) == before  # train mode, requires_grad flags, no .grad, cuDNN flags: as before
    assert M.resolve_layer(model, "stage2.0.branch1.0") is M.resolve_layer(model, "stage2[0].branch1[0]")


def test_fixture_fu_stratified_differs_only_by_batching(fixture_case):
    """The default batches differently, so its value is not the reference's; given the same batches (the
    stratified order passed in as the given order) the two modes agree exactly."""
    model, images, labels, _ = fixture_case
    strat = M.fu(model, "conv1[0]", "stage2[0].branch1[0]", images, labels)
    order = torch.cat(fu_batches(labels, 6, batching="stratified", seed=0)).numpy()
    again = M.fu(model, "conv1[0]", "stage2[0].branch1[0]", images[order], labels[order], batching="given")
    assert strat == again
    ref = M.fu(model, "conv1[0]", "stage2[0].branch1[0]", images, labels, batching="given")
    assert strat != ref


# ------------------------------------------------------------------------------------------------ batching

def test_given_batches_are_consecutive_with_remainder():
    b = fu_batches(np.zeros(200, dtype=int), 6, batching="given")
    assert [len(i) for i in b] == [33] * 6 + [2]
    assert torch.equal(torch.cat(b), torch.arange(200))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_batches_hold_every_class_in_proportion(seed):
    counts = [40, 25, 13]
    y = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))  # class-sorted
    b = fu_batches(y, 6, batching="stratified", seed=seed)
    N, bs = len(y), len(y) // 6
    assert torch.equal(torch.sort(torch.cat(b)).values, torch.arange(N))  # a partition of the images
    for idx in b[:6]:  # the full batches
        assert len(idx) == bs
        have = torch.bincount(y[idx], minlength=3)
        for c, n_c in enumerate(counts):
            assert abs(have[c].item() - n_c * bs / N) <= 1.5, (have, counts)


def test_stratified_with_unequal_labels_and_column_labels():
    y = np.array([5, 5, 9, 9, 9, 2, 2, 2, 2, 5, 9, 2])[:, None]  # (N, 1) like MedMNIST; arbitrary label values
    b = fu_batches(y, 2, batching="stratified", seed=3)
    for idx in b:
        assert set(y[idx.numpy(), 0].tolist()) == {2, 5, 9}


def test_stratified_order_is_seeded():
    y = torch.arange(90) % 3
    a = torch.cat(fu_batches(y, 6, seed=0))
    assert torch.equal(a, torch.cat(fu_batches(y, 6, seed=0)))
    assert not torch.equal(a, torch.cat(fu_batches(y, 6, seed=1)))


def test_sorted_target_given_fails_stratified_succeeds():
    """On a class-sorted target every consecutive batch holds one class: no valid triplet anywhere."""
    model = resnet18()
    x, y = data(60, 3, sorted_=True)  # batches of 10, each within one class of 20
    with pytest.raises(ValueError, match="no valid triplet"):
        fu(model, *LAYERS, x, y, batching="given")
    value = fu(model, *LAYERS, x, y)
    assert np.isfinite(value) and value > 0
    # two classes 32/32 sorted, batches of 10: the batch 30-39 straddles the boundary (2 + 8 images), so
    # "given" gives a value, but from that one batch only
    x2, y2 = data(64, 2, sorted_=True)
    assert fu(model, *LAYERS, x2, y2, batching="given") != fu(model, *LAYERS, x2, y2)


def test_fu_deterministic_for_a_seed_and_changes_with_it():
    model = resnet18()
    x, y = data(60, 3)
    a = fu(model, *LAYERS, x, y, seed=0)
    torch.manual_seed(123)  # the global RNG plays no part
    assert fu(model, *LAYERS, x, y, seed=0) == a
    assert fu(model, *LAYERS, x, y, seed=1) != a


# ------------------------------------------------------------------------------------------------ micro-batches

@pytest.mark.parametrize("batching", BATCHING)
def test_micro_batched_equals_single_pass_float64(batching):
    """Exact up to summation order: micro-batches of 1, 7 (does not divide the batch of 20), 20 and 64."""
    model = resnet18(dtype=torch.float64)
    x, y = data(60, 3)
    ref = fu(model, *LAYERS, x, y, n_batches=3, batching=batching, micro_batch=None)
    for mb in (1, 7, 20, 64):
        v = fu(model, *LAYERS, x, y, n_batches=3, batching=batching, micro_batch=mb)
        assert v == pytest.approx(ref, rel=1e-12), mb


@pytest.mark.parametrize("batching", BATCHING)
def test_micro_batched_equals_single_pass_float32(batching):
    """In float32 the convolutions of different batch sizes round differently (and a triplet at the margin may
    flip), so agreement is to float32 noise: ~1e-6 relative was seen; 1e-5 asserted."""
    model = resnet18()
    x, y = data(60, 3)
    ref = fu(model, *LAYERS, x, y, n_batches=3, batching=batching, micro_batch=None)
    for mb in (7, 16):
        assert fu(model, *LAYERS, x, y, n_batches=3, batching=batching, micro_batch=mb) == \
            pytest.approx(ref, rel=1e-5), mb


def test_lazy_images_match_tensor_and_are_asked_in_micro_batches():
    model = resnet18()
    x, y = data(60, 3)
    asked = []

    def images(index):
        assert index.dtype == torch.int64 and index.device.type == "cpu"
        asked.append(len(index))
        return x[index]

    ref = fu(model, *LAYERS, x, y, micro_batch=4)
    assert fu(model, *LAYERS, images, y, micro_batch=4) == ref
    assert max(asked) == 4 and sum(asked) <= 2 * 60  # each image at most twice (pass 1 and pass 2)
    asked.clear()
    assert fu(model, *LAYERS, images, y, micro_batch=None) == fu(model, *LAYERS, x, y, micro_batch=None)
    assert max(asked) == 10  # the single-pass path loads a whole batch


def test_numpy_images_and_labels_accepted():
    model = resnet18()
    x, y = data(36, 2)
    assert fu(model, *LAYERS, x.numpy(), y.numpy()) == fu(model, *LAYERS, x, y)


def test_side_effects_restored_on_error_in_the_loader():
    model = resnet18()
    model.train()
    model.layer2.requires_grad_(False)
    before = state(model)
    x, y = data(60, 3)
    calls = []

    def images(index):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("disk gone")
        return x[index]

    with pytest.raises(RuntimeError, match="disk gone"):
        fu(model, *LAYERS, images, y, micro_batch=4)
    assert state(model) == before
    fu(model, *LAYERS, x, y)
    assert state(model) == before


# ------------------------------------------------------------------------------------------------ bad inputs

def test_bad_inputs():
    model = resnet18()
    x, y = data(36, 2)
    with pytest.raises(ValueError, match="'stratified', 'given'"):
        fu(model, *LAYERS, x, y, batching="sorted")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="micro_batch"):
            fu(model, *LAYERS, x, y, micro_batch=bad)
    with pytest.raises(ValueError, match="different lengths"):
        fu(model, *LAYERS, x[:30], y)
    with pytest.raises(ValueError, match="at least 2 images per batch"):
        fu(model, *LAYERS, x[:6], y[:6])
    bad_x = x.clone()
    bad_x[5, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fu(model, *LAYERS, bad_x, y)
    with pytest.raises(ValueError, match="NaN"):
        fu(model, *LAYERS, lambda i: bad_x[i], y)
    with pytest.raises(ValueError, match="loader returned shape"):
        fu(model, *LAYERS, lambda i: x[:3], y)
    with pytest.raises(ValueError, match="multi-label"):
        fu(model, *LAYERS, x, torch.zeros(36, 3))
    with pytest.raises(ValueError, match=".weight"):
        fu(model, "relu", LAYERS[1], x, y)


# ------------------------------------------------------------------------------------------------ the loss's gradient

def pml_grad(emb, y):
    from pytorch_metric_learning.losses import TripletMarginLoss

    e = emb.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(TripletMarginLoss()(e, y), e)
    return g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,C,chunk", [(40, 2, 1 << 24), (57, 3, 1000), (33, 5, 1), (12, 2, 7)])
def test_triplet_margin_grad_equals_the_library(B, C, chunk, dtype):
    from helpers.metrics.fu import triplet_margin_grad

    g = torch.Generator().manual_seed(B + C)
    y = torch.randint(0, C, (B,), generator=g)
    y[:C] = torch.arange(C)
    # close embeddings (as from a random network): many triplets violate the margin, some do not
    emb = (1 + 0.05 * torch.randn(B, 16, generator=g, dtype=torch.float64) + 0.02 * y[:, None]).to(dtype)
    ref = pml_grad(emb, y)
    ours = triplet_margin_grad(emb, y, chunk_elements=chunk)
    assert ref.abs().max() > 0
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours, ref, rtol=tol, atol=tol * float(ref.abs().max()))


def test_triplet_margin_grad_zero_cases():
    from helpers.metrics.fu import triplet_margin_grad

    assert triplet_margin_grad(torch.randn(10, 4), torch.zeros(10, dtype=torch.long)) is None  # no triplet
    y = torch.arange(10) % 2
    far = torch.nn.functional.one_hot(y, 4).float() * 10 + 0.001 * torch.randn(10, 4)  # all satisfy the margin
    assert float(pml_grad(far, y).abs().max()) == 0
    assert triplet_margin_grad(far, y) is None

"""Tests of helpers.similarity: reference fixtures, invariances, random baselines, minibatch CKA, bad inputs,
[R]'s activation sampling on a real ResNet-18, prediction similarity and weight change."""
from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch
import torchvision

from helpers import similarity as S
from helpers.data import MD5MismatchWarning, TensorImageDataset, load_medmnist

FIXTURE_CASES = ["sim_resnet18_layer1_pre_ft"]
MEASURE_KEYS = {"cca_mean": S.cca, "svcca_mean": S.svcca, "pwcca": S.pwcca, "linear_cka": S.linear_cka,
                "linear_cka_debiased": lambda x, y: S.linear_cka(x, y, debiased=True)}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def gaussian(n, d, seed):
    return np.random.default_rng(seed).normal(size=(n, d))


def correlated(n=800, d=12, noise=0.7, seed=0):
    """Two views sharing a latent: y = x mixed + noise, so similarities are strictly between 0 and 1."""
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, d)) * np.linspace(0.5, 3, d)
    y = x @ g.normal(size=(d, d + 3)) + noise * g.normal(size=(n, d + 3)) * 4
    return x, y


@pytest.fixture(scope="module")
def expected(similarity_fixtures):
    return json.loads((similarity_fixtures / "similarity_expected.json").read_text())


@pytest.fixture(scope="module")
def acts(similarity_fixtures):
    out = {}
    for case in FIXTURE_CASES:
        with np.load(similarity_fixtures / f"{case}.npz", allow_pickle=False) as d:
            out[case] = (d["acts1"], d["acts2"])
    return out


# ------------------------------------------------------------------------------------------ reference fixtures

@pytest.mark.parametrize("case", FIXTURE_CASES)
@pytest.mark.parametrize("key", list(MEASURE_KEYS))
def test_fixture_values(expected, acts, case, key):
    x, y = acts[case]
    assert rel(MEASURE_KEYS[key](x, y), expected[case][key]) < 1e-6


@pytest.mark.parametrize("case", FIXTURE_CASES)
def test_fixture_counts(expected, acts, case):
    x, y = acts[case]
    assert list(x.shape) == expected[case]["shape"]
    coefs = S.cca_coefficients(x, y)
    assert len(coefs) == expected[case]["n_coefs"]
    assert np.all(np.diff(coefs) <= 1e-12) and 0 <= coefs.min() and coefs.max() <= 1
    assert [S.svd_reduce(x).shape[1], S.svd_reduce(y).shape[1]] == expected[case]["svcca_dims"]
    # torch input (float32 tensors) gives the same values as NumPy input
    assert rel(S.cca(torch.from_numpy(x), torch.from_numpy(y)), expected[case]["cca_mean"]) < 1e-6


# ------------------------------------------------------------------------------------------ properties

@pytest.mark.parametrize("name", list(S.MEASURES))
def test_self_similarity_is_one(name):
    x, _ = correlated()
    assert abs(S.MEASURES[name](x, x) - 1) < 1e-6


def test_cca_invariant_to_invertible_linear_maps():
    x, y = correlated()
    g = np.random.default_rng(5)
    a = g.normal(size=(x.shape[1], x.shape[1])) + 3 * np.eye(x.shape[1])  # invertible, far from orthogonal
    b = g.normal(size=(y.shape[1], y.shape[1])) + 3 * np.eye(y.shape[1])
    base = S.cca(x, y)
    assert 0.2 < base < 0.99
    assert abs(S.cca(x @ a + 7.0, y @ b - 2.0) - base) < 1e-8
    np.testing.assert_allclose(S.cca_coefficients(x @ a, y @ b), S.cca_coefficients(x, y), atol=1e-8)
    assert abs(S.svcca(x, y, keep=1.0) - S.svcca(x @ a, y @ b, keep=1.0)) < 1e-8
    # and CKA is not invariant to the same maps
    assert abs(S.linear_cka(x @ a, y) - S.linear_cka(x, y)) > 1e-2
    assert abs(S.cca(x @ a, x) - 1) < 1e-6 and S.linear_cka(x @ a, x) < 0.99


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariant_to_orthogonal_maps_and_isotropic_scaling(debiased):
    x, y = correlated()
    g = np.random.default_rng(6)
    q = np.linalg.qr(g.normal(size=(x.shape[1], x.shape[1])))[0]
    base = S.linear_cka(x, y, debiased)
    assert 0.1 < base < 0.99
    assert abs(S.linear_cka(3.5 * x @ q + 1.0, y, debiased) - base) < 1e-10
    assert abs(S.linear_cka(x, 0.01 * y, debiased) - base) < 1e-10
    # an anisotropic scaling is not an isometry: the value moves
    assert abs(S.linear_cka(x * np.linspace(0.1, 5, x.shape[1]), y, debiased) - base) > 1e-2


def test_symmetry_and_range():
    x, y = correlated()
    for name in ("cca", "linear_cka", "linear_cka_debiased", "svcca"):
        a, b = S.MEASURES[name](x, y), S.MEASURES[name](y, x)
        assert abs(a - b) < 1e-9 and 0 <= a <= 1


def test_random_baselines_near_their_expectations():
    n, d, seeds = 2000, 20, range(8)
    biased, debiased, mean_sq, mean = [], [], [], []
    for s in seeds:
        x, y = gaussian(n, d, 2 * s), gaussian(n, d, 2 * s + 1)
        biased.append(S.linear_cka(x, y))
        debiased.append(S.linear_cka(x, y, debiased=True))
        c = S.cca_coefficients(x, y)
        mean_sq.append(np.mean(c**2))
        mean.append(S.cca(x, y))
    # biased CKA of independent isotropic Gaussians: E|X'Y|^2 / sqrt(E|X'X|^2 E|Y'Y|^2) = d / (n - 1 + d)
    assert rel(np.mean(biased), d / (n - 1 + d)) < 0.1
    assert abs(np.mean(debiased)) < 2e-3  # unbiased HSIC: 0 in expectation (sd of one value ~ 8e-4)
    # Pillai's trace under independence: E sum r_i^2 = d^2 / (n - 1), so the mean r^2 is d / (n - 1)
    assert rel(np.mean(mean_sq), d / (n - 1)) < 0.1
    assert np.mean(mean) < np.sqrt(d / (n - 1))  # Jensen
    # the floor rises as points get fewer: n = 2 d gives a mean canonical correlation far above sqrt(d / n)
    assert S.cca(gaussian(2 * d + 1, d, 0), gaussian(2 * d + 1, d, 1)) > 0.5


@pytest.mark.parametrize("debiased", [False, True])
def test_minibatch_cka_equals_full(debiased):
    g = np.random.default_rng(3)
    x = g.normal(size=(3001, 16)) * 2 + 50.0  # a large common offset: centring must use the global mean
    y = np.tanh(x[:, :10] @ g.normal(size=(10, 24))) + 0.3 * g.normal(size=(3001, 24))
    full = S.linear_cka(x, y, debiased=debiased)
    acc = S.MinibatchCKA(debiased=debiased)
    for start, stop in [(0, 1), (1, 500), (500, 1777), (1777, 3001)]:  # uneven batches, one of a single point
        acc.update(x[start:stop], torch.from_numpy(y[start:stop]))
    assert acc.n == 3001
    assert abs(acc.value() - full) < 1e-10
    assert abs(acc.value(debiased=not debiased) - S.linear_cka(x, y, debiased=not debiased)) < 1e-10
    batches = ((x[i:i + 256], y[i:i + 256]) for i in range(0, 3001, 256))
    assert abs(S.linear_cka_minibatch(batches, debiased) - full) < 1e-10


def test_minibatch_cka_bad_input():
    acc = S.MinibatchCKA()
    with pytest.raises(ValueError, match="has 0 points"):
        acc.value()
    acc.update(np.ones((5, 3)) * np.arange(5)[:, None], np.arange(10.0).reshape(5, 2))
    with pytest.raises(ValueError, match="batch widths"):
        acc.update(np.zeros((4, 4)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="no batches"):
        S.linear_cka_minibatch([])


def test_constant_neuron_is_dropped_by_cca_and_ignored_by_cka():
    x, y = correlated()
    xc = np.column_stack([x, np.full(len(x), 4.2)])
    assert len(S.cca_coefficients(xc, y)) == min(x.shape[1], y.shape[1])  # dropped, documented
    assert abs(S.cca(xc, y) - S.cca(x, y)) < 1e-9
    assert abs(S.linear_cka(xc, y) - S.linear_cka(x, y)) < 1e-12
    assert abs(S.pwcca(xc, y) - S.pwcca(x, y)) < 1e-9
    for fn in (S.cca, S.linear_cka, S.svcca, S.pwcca):
        with pytest.raises(ValueError, match="constant"):
            fn(np.full((50, 3), 2.0), y[:50])


def test_pwcca_when_y_keeps_fewer_neurons():
    x, y = correlated()
    v = S.pwcca(y, x)  # x (12 neurons) is now the second argument and the smaller side
    assert 0 < v <= 1 and abs(v - S.pwcca(x, y)) < 0.2


# ------------------------------------------------------------------------------------------ bad inputs

def test_bad_inputs_name_the_problem():
    x, y = correlated()
    with pytest.raises(ValueError, match="same points.*800 and 799"):
        S.cca(x, y[:-1])
    with pytest.raises(ValueError, match="same points"):
        S.linear_cka(x, y[:-1])
    bad = x.copy()
    bad[3, 2] = np.nan
    bad[7, 0] = np.inf
    for fn in (S.cca, S.linear_cka, S.svcca, S.pwcca):
        with pytest.raises(ValueError, match="NaN or Inf.*2 of 800"):
            fn(bad, y)
    with pytest.raises(ValueError, match=r"2-D.*x\[:, None\]"):
        S.cca(x[:, 0], y)
    with pytest.raises(ValueError, match="empty"):
        S.linear_cka(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="empty"):
        S.cca(np.zeros((10, 0)), y[:10])
    with pytest.raises(ValueError, match="expected numbers"):
        S.cca(np.array([["a", "b"]] * 5), y[:5])
    with pytest.raises(ValueError, match="epsilon"):
        S.cca(x, y, epsilon=-1)
    with pytest.raises(ValueError, match="keep"):
        S.svcca(x, y, keep=0)
    with pytest.raises(ValueError, match="at least 4 points"):
        S.linear_cka(x[:3], y[:3], debiased=True)


@pytest.mark.parametrize("fn", [S.cca, S.svcca, S.pwcca, S.cca_coefficients])
def test_cca_needs_more_points_than_neurons(fn):
    x, y = gaussian(64, 64, 0), gaussian(64, 64, 1)
    with pytest.raises(ValueError, match="more points than neurons: x has 64 points and 64 neurons"):
        fn(x, y)
    with pytest.raises(ValueError, match="y has 40 points and 64 neurons"):
        fn(x[:40, :10], y[:40])
    assert 0 < S.cca(gaussian(65, 64, 0), gaussian(65, 64, 1)) <= 1 + 1e-9  # n = d + 1 is allowed
    assert np.isfinite(S.linear_cka(x[:40], y[:40]))  # CKA has no such limit


def test_low_precision_inputs_are_upcast():
    x, y = correlated()
    for dtype in (torch.float16, torch.bfloat16):
        xt, yt = torch.from_numpy(x).to(dtype), torch.from_numpy(y).to(dtype)
        ref_x, ref_y = xt.double().numpy(), yt.double().numpy()  # the values the low-precision input holds
        assert S.cca(xt, yt) == pytest.approx(S.cca(ref_x, ref_y), abs=1e-12)
        assert S.linear_cka(xt, yt) == pytest.approx(S.linear_cka(ref_x, ref_y), abs=1e-12)
    assert np.isfinite(S.cca(x.astype(np.float16), y.astype(np.float16)))
    ints = np.random.default_rng(0).integers(0, 5, size=(300, 4))
    assert 0.99 < S.cca(ints, ints.astype(np.float64)) <= 1 + 1e-9


def test_inputs_are_not_modified():
    x, y = correlated()
    x0, y0 = x.copy(), y.copy()
    xt = torch.from_numpy(x.copy())
    for fn in S.MEASURES.values():
        fn(x, y)
        fn(xt, y)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(xt.numpy(), x0)


# ------------------------------------------------------------------------------------------ [R]'s sampling

@pytest.fixture(scope="module")
def breast(shared_data_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MD5MismatchWarning)  # the shared copy is a subset of the official file
        data = load_medmnist("breastmnist", size=28, root=shared_data_root)
    return TensorImageDataset.from_medmnist(data, "train", image_size=56, device="cpu")


def resnet18(seed):
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=2)


def hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_layer_activations_sampling(breast):
    model = resnet18(0)
    model.train()
    shapes = S.layer_shapes(model, breast)
    # 56 px input: stem 28x28, then 14, 7, 4, 2
    assert shapes == {"relu": (64, 28, 28), "layer1": (64, 14, 14), "layer2": (128, 7, 7),
                      "layer3": (256, 4, 4), "layer4": (512, 2, 2)}
    acts = S.layer_activations(model, breast, repeats=2, seed=3)
    assert hook_count(model) == 0 and model.training  # hooks removed, mode restored
    n = len(breast)
    for (layer, r), a in acts.items():
        c, h, w = shapes[layer]
        wanted = round(10_000 / (h * w))
        assert a.shape == (min(wanted, n) * h * w, 64) and a.dtype == torch.float32
        if wanted <= n:
            assert a.shape[0] == wanted * h * w
    assert acts[("relu", 0)].shape[0] == 13 * 28 * 28 and acts[("layer1", 0)].shape[0] == 51 * 14 * 14
    assert acts[("layer3", 0)].shape[0] == n * 16  # 625 images wanted, the set has 546: all of them
    # the same activations come back from a pass over those images alone (hooks pick the right rows/channels)
    plan = S.sampling_plan(shapes, n, repeats=2, seed=3)
    s = next(p for p in plan if p.layer == "layer1" and p.repeat == 1)
    feats = {}
    h = model.layer1.register_forward_hook(lambda m, i, o: feats.__setitem__("o", o))
    model.eval()
    with torch.no_grad():
        model(breast.batch(torch.as_tensor(s.images))[0])
    h.remove()
    direct = feats["o"][:, list(s.channels)].permute(0, 2, 3, 1).reshape(-1, 64)
    torch.testing.assert_close(acts[("layer1", 1)], direct, rtol=1e-5, atol=1e-5)


def test_same_seed_same_draws_for_two_models(breast):
    a, b = resnet18(0), resnet18(1)
    shapes = S.layer_shapes(a, breast)
    assert S.sampling_plan(shapes, len(breast), seed=7) == S.sampling_plan(S.layer_shapes(b, breast), len(breast), seed=7)
    assert S.sampling_plan(shapes, len(breast), seed=7) != S.sampling_plan(shapes, len(breast), seed=8)
    # draws of a layer do not depend on which other layers are asked for
    only = S.sampling_plan({"layer2": shapes["layer2"]}, len(breast), seed=7)
    assert only == [p for p in S.sampling_plan(shapes, len(breast), seed=7) if p.layer == "layer2"]
    # a copy of a gets identical activations under the same seed (same images, same channels) ...
    twin = copy.deepcopy(a)
    acts_a = S.layer_activations(a, breast, ("relu", "layer1"), repeats=1, seed=7)
    acts_t = S.layer_activations(twin, breast, ("relu", "layer1"), repeats=1, seed=7)
    for key in acts_a:
        torch.testing.assert_close(acts_a[key], acts_t[key], rtol=0, atol=0)
    # ... and compare_models finds it identical, while two random inits are not
    table = S.compare_models(a, twin, breast, ("relu", "layer1"), measures=("cca", "linear_cka"), repeats=1)
    assert set(table.columns) >= {"layer", "stage", "repeat", "n_points", "n_channels", "measure", "value"}
    assert len(table) == 4 and np.allclose(table.value, 1, atol=1e-6) and not table.few_points.any()
    assert list(table.stage.unique()) == ["conv1", "block1"]
    other = S.compare_models(a, b, breast, ("layer1",), measures=("cca",), repeats=1)
    assert 0.1 < other.value.iloc[0] < 0.95
    assert hook_count(a) == hook_count(b) == hook_count(twin) == 0


def test_layer_activations_bad_input(breast):
    model = resnet18(0)
    with pytest.raises(ValueError, match="no module named.*'layer9'"):
        S.layer_activations(model, breast, ("layer9",))
    with pytest.raises(ValueError, match="runs 2 times"):
        S.layer_activations(model, breast, ("layer1.0.relu",), repeats=1)  # a ReLU shared inside the block
    assert hook_count(model) == 0
    with pytest.raises(ValueError, match="float model inputs"):
        S.layer_activations(model, torch.zeros(4, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown measures"):
        S.compare_models(model, model, breast, measures=("nope",))
    # a plain float tensor of prepared inputs works too; 2-D outputs (the head) are 1 x 1 maps
    x = breast.batch(torch.arange(40))[0]
    acts = S.layer_activations(model, x, ("layer4", "fc"), repeats=1, n_channels=2)
    assert acts[("fc", 0)].shape == (40, 2)  # 10000 points wanted from 1x1 maps: all 40 images


# ------------------------------------------------------------------------------------------ predictions

def test_prediction_similarity_hand_computed():
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 0])
    a = np.array([0, 0, 1, 1, 2, 0, 0, 1, 1, 0])  # wrong on 5, 8: acc .8
    b = np.array([0, 1, 1, 1, 2, 1, 0, 2, 2, 0])  # wrong on 1, 5, 7: acc .7
    r = S.prediction_similarity(a, b, labels)
    assert r["n"] == 10 and r["accuracy_a"] == pytest.approx(0.8) and r["accuracy_b"] == pytest.approx(0.7)
    # both right on 0,2,3,4,6,9 (6); both wrong on 5 (1): 7 of 10
    assert r["error_agreement"] == pytest.approx(0.7)
    assert r["prediction_agreement"] == pytest.approx(0.6)  # same class on 0,2,3,4,6,9
    assert r["independent_baseline"] == pytest.approx(0.8 * 0.7 + 0.2 * 0.3)
    assert r["r_baseline_as_coded"] == pytest.approx(0.8**2 + 0.2**2)
    assert r["kappa"] == pytest.approx((0.7 - 0.62) / (1 - 0.62))
    # (N, C) scores are arg-maxed; order of a and b only swaps the as-coded baseline
    scores = np.eye(3)[a] * 2.0 - 0.5
    assert S.prediction_similarity(scores, torch.from_numpy(b), labels)["kappa"] == pytest.approx(r["kappa"])
    assert S.prediction_similarity(b, a, labels)["r_baseline_as_coded"] == pytest.approx(0.7**2 + 0.3**2)
    same = S.prediction_similarity(a, a, labels)
    assert same["kappa"] == pytest.approx(1.0) and same["error_agreement"] == 1.0
    perfect = S.prediction_similarity(labels, labels, labels)
    assert np.isnan(perfect["kappa"])  # documented: no errors to agree on


def test_prediction_similarity_bad_input():
    y = np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="3 predictions, labels have 4"):
        S.prediction_similarity(y[:3], y, y)
    with pytest.raises(ValueError, match="class indices"):
        S.prediction_similarity(np.array([0.2, 0.9, 0.6, 0.1]), y, y)
    with pytest.raises(ValueError, match="NaN or Inf"):
        S.prediction_similarity(np.array([[0.2, np.nan]] * 4), y, y)
    with pytest.raises(ValueError, match="non-empty"):
        S.prediction_similarity([], [], [])


# ------------------------------------------------------------------------------------------ weights

def test_weight_change():
    pre = resnet18(0)
    ft = copy.deepcopy(pre)
    with torch.no_grad():
        ft.layer2[0].conv1.weight.mul_(1.5)          # relative change .5, cosine 1
        ft.conv1.weight.copy_(-ft.conv1.weight)      # relative change 2, cosine -1
        ft.bn1.running_mean.add_(10.0)               # BN statistics: excluded
        ft.bn1.weight.add_(1.0)                      # BN affine: excluded
    ft.fc = torch.nn.Linear(512, 7)                  # a new head of another shape: skipped
    table = S.weight_change(pre, ft)
    assert "bn1" not in set(table.layer) and "fc" not in set(table.layer)
    assert set(table.kind) == {"conv"} and len(table) == 20  # 17 convs of the trunk + 3 downsample convs
    row = table.set_index("layer")
    assert row.at["layer2.0.conv1", "relative_change"] == pytest.approx(0.5)
    assert row.at["layer2.0.conv1", "cosine"] == pytest.approx(1.0)
    assert row.at["conv1", "relative_change"] == pytest.approx(2.0)
    assert row.at["conv1", "cosine"] == pytest.approx(-1.0)
    untouched = table[~table.layer.isin(["conv1", "layer2.0.conv1"])]
    assert (untouched.relative_change == 0).all() and np.allclose(untouched.cosine, 1)
    stages = S.weight_change_by_stage(table).set_index("stage")
    assert list(stages.index) == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    l2 = table[table.stage == "layer2"]
    changed = row.at["layer2.0.conv1", "norm_pretrained"]
    assert stages.at["layer2", "relative_change"] == pytest.approx(0.5 * changed / np.sqrt((l2.norm_pretrained**2).sum()))
    assert stages.at["layer1", "relative_change"] == 0 and stages.at["layer2", "n_layers"] == len(l2)
    # state dicts give the same table; a mismatched head raises on request
    from_state = S.weight_change(pre.state_dict(), ft.state_dict())
    np.testing.assert_allclose(from_state.relative_change.to_numpy(), table.relative_change.to_numpy())
    with pytest.raises(ValueError, match=r"fc: shapes \(2, 512\) vs \(7, 512\)"):
        S.weight_change(pre, ft, mismatched="error")
    with pytest.raises(ValueError, match="nn.Module or a state dict"):
        S.weight_change(pre, 3)


# ------------------------------------------------------------------------------------------ GPU

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(acts, breast):
    x, y = acts[FIXTURE_CASES[0]]
    xg, yg = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    for name, fn in S.MEASURES.items():
        assert rel(fn(xg, yg), fn(x, y)) < 1e-9, name
    assert rel(S.cca(xg, y), S.cca(x, y)) < 1e-9  # a NumPy partner follows the tensor onto the GPU
    acc = S.MinibatchCKA(debiased=True)
    for i in range(0, len(x), 1000):
        acc.update(xg[i:i + 1000], yg[i:i + 1000])
    assert acc.xx.device.type == "cuda" and rel(acc.value(), S.linear_cka(x, y, debiased=True)) < 1e-9
    with pytest.raises(ValueError, match="one device"):
        S.cca(xg, torch.from_numpy(y))
    model = resnet18(0)
    cpu = S.layer_activations(copy.deepcopy(model), breast, ("layer1",), repeats=1)
    gpu_data = TensorImageDataset(breast.images.permute(0, 2, 3, 1).cpu().numpy(), breast.labels.cpu().numpy(),
                                  image_size=56, device="cuda")
    gpu = S.layer_activations(model, gpu_data, ("layer1",), repeats=1)
    assert gpu[("layer1", 0)].device.type == "cuda" and gpu[("layer1", 0)].shape == cpu[("layer1", 0)].shape
    # same images and channels on both devices; values differ only by kernel rounding (TF32 convolutions)
    torch.testing.assert_close(gpu[("layer1", 0)].cpu(), cpu[("layer1", 0)], rtol=1e-2, atol=1e-2)
    assert S.linear_cka(gpu[("layer1", 0)], cpu[("layer1", 0)].cuda()) > 0.9999

"""Tests of helpers.metrics.ccfv (CC-FV, Yang et al. MICCAI 2023 [S]): distances against direct formulas,
sampling, class consistency (fixed vs official averaging), feature variety, combination, bad inputs, GPU."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

import helpers.metrics as M


def spd(rng, D, n=None):
    A = rng.normal(size=(D, n or D + 3))
    return A @ A.T / (n or D + 3) + 0.05 * np.eye(D)


def w2_direct(m1, c1, m2, c2):
    s1 = sqrtm(c1)
    cross = np.trace(sqrtm(s1 @ c2 @ s1)).real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross)


def kl_direct(m1, c1, m2, c2):
    D = len(m1)
    inv2 = np.linalg.inv(c2)
    d = m2 - m1
    return 0.5 * (np.trace(inv2 @ c1) + d @ inv2 @ d - D + np.linalg.slogdet(c2)[1] - np.linalg.slogdet(c1)[1])


def bhatt_direct(m1, c1, m2, c2):
    S = (c1 + c2) / 2
    d = m1 - m2
    return (d @ np.linalg.inv(S) @ d / 8
            + 0.5 * (np.linalg.slogdet(S)[1] - 0.5 * (np.linalg.slogdet(c1)[1] + np.linalg.slogdet(c2)[1])))


def gauss(x):
    return x.mean(0), np.cov(x.T)


def cc_direct(X, y, c, dist="w2"):
    """Mean over classes of the mean over case pairs, Gaussians from np.mean / np.cov (as the official code)."""
    per_class = []
    for k in np.unique(y):
        cases = [i for i in np.unique(c) if ((y == k) & (c == i)).sum() >= 2]
        g = {i: gauss(X[(y == k) & (c == i)]) for i in cases}
        d = []
        for i, j in itertools.combinations(cases, 2):
            if dist == "w2":
                d.append(math.sqrt(max(w2_direct(*g[i], *g[j]), 0.0)))
        per_class.append(np.mean(d))
    return float(np.mean(per_class))


def blobs(seed, n_cases=5, classes=(1, 2), n=40, D=6, shift=0.0):
    rng = np.random.default_rng(seed)
    X, y, c = [], [], []
    for i in range(n_cases):
        for k in classes:
            X.append(rng.normal(size=(n, D)) * (1 + 0.2 * k) + k + shift * i)
            y += [k] * n
            c += [i] * n
    return np.concatenate(X), np.array(y), np.array(c)


# ------------------------------------------------------------------------------------- Gaussian distances

@pytest.mark.parametrize("D", [1, 5, 16, 64])
def test_gaussian_w2_matches_sqrtm(D):
    rng = np.random.default_rng(D)
    m1, m2, c1, c2 = rng.normal(size=D), rng.normal(size=D), spd(rng, D), spd(rng, D)
    got = M.gaussian_w2(m1, c1, m2, c2)
    assert got.dtype == torch.float64 and got.shape == ()
    assert float(got) == pytest.approx(w2_direct(m1, c1, m2, c2), rel=1e-9, abs=1e-9)
    assert float(M.gaussian_w2(m2, c2, m1, c1)) == pytest.approx(float(got), rel=1e-9)  # symmetric
    assert abs(float(M.gaussian_w2(m1, c1, m1, c1))) <= 1e-10 * np.trace(c1)  # identical -> 0


def test_w2_stable_at_512_dims_and_rank_deficient():
    rng = np.random.default_rng(512)
    D = 512
    m1, m2, c1, c2 = rng.normal(size=D), rng.normal(size=D), spd(rng, D), spd(rng, D)
    assert float(M.gaussian_w2(m1, c1, m2, c2)) == pytest.approx(w2_direct(m1, c1, m2, c2), rel=1e-8)
    # rank-deficient covariances (30 samples per case in 512 dims), as sampled pixels usually are: the class
    # consistency path (through an r x r factor) agrees with the full D x D formula and stays finite
    X = rng.normal(size=(90, D)) * np.linspace(0.1, 3.0, D)
    y, c = np.ones(90, dtype=np.int64), np.repeat(np.arange(3), 30)
    got = M.class_consistency(X, y, c, squared=True)
    def psd_sqrt(S):  # full D x D square root by symmetric eigendecomposition (sqrtm is slow on singular S)
        w, V = np.linalg.eigh(S)
        return (V * np.sqrt(np.clip(w, 0, None))) @ V.T

    def w2_full(m1, c1, m2, c2):
        s1 = psd_sqrt(c1)
        return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(psd_sqrt(s1 @ c2 @ s1)))

    gauss_ = [(X[c == i].mean(0), np.cov(X[c == i], rowvar=False)) for i in range(3)]
    direct = np.mean([w2_full(*gauss_[i], *gauss_[j]) for i, j in ((0, 1), (0, 2), (1, 2))])
    assert np.isfinite(got) and got == pytest.approx(direct, rel=1e-6)


def test_gaussian_w2_batched_and_commuting():
    rng = np.random.default_rng(1)
    B, D = 4, 12
    m1, m2 = rng.normal(size=(B, D)), rng.normal(size=(B, D))
    c1 = np.stack([spd(rng, D) for _ in range(B)])
    c2 = np.stack([spd(rng, D) for _ in range(B)])
    got = M.gaussian_w2(torch.from_numpy(m1), torch.from_numpy(c1), torch.from_numpy(m2), torch.from_numpy(c2))
    assert got.shape == (B,)
    np.testing.assert_allclose(got.numpy(), [w2_direct(m1[b], c1[b], m2[b], c2[b]) for b in range(B)], rtol=1e-9)
    # commuting (diagonal) covariances: W2^2 = |dmu|^2 + sum (sqrt a - sqrt b)^2
    a, b = rng.uniform(0.1, 3, size=D), rng.uniform(0.1, 3, size=D)
    closed = ((m1[0] - m2[0]) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert float(M.gaussian_w2(m1[0], np.diag(a), m2[0], np.diag(b))) == pytest.approx(closed, rel=1e-12)
    # a rank-deficient covariance is fine (eigenvalues clamped), and W2 of two Diracs is |dmu|^2
    z = np.zeros((D, D))
    assert float(M.gaussian_w2(m1[0], z, m2[0], z)) == pytest.approx(((m1[0] - m2[0]) ** 2).sum(), rel=1e-12)


def test_gaussian_kl_and_bhattacharyya_match_numpy():
    rng = np.random.default_rng(2)
    for D in (1, 4, 20):
        m1, m2, c1, c2 = rng.normal(size=D), rng.normal(size=D), spd(rng, D), spd(rng, D)
        kl12, kl21 = kl_direct(m1, c1, m2, c2), kl_direct(m2, c2, m1, c1)
        assert float(M.gaussian_kl(m1, c1, m2, c2, symmetric=False)) == pytest.approx(kl12, rel=1e-9)
        assert float(M.gaussian_kl(m1, c1, m2, c2)) == pytest.approx((kl12 + kl21) / 2, rel=1e-9)
        assert float(M.gaussian_bhattacharyya(m1, c1, m2, c2)) == pytest.approx(bhatt_direct(m1, c1, m2, c2),
                                                                               rel=1e-9)
        assert abs(float(M.gaussian_kl(m1, c1, m1, c1))) < 1e-10
    with pytest.raises(ValueError, match="not positive definite"):
        M.gaussian_kl(np.zeros(3), np.zeros((3, 3)), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        M.gaussian_w2(np.array([np.nan, 0.0]), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="expected"):
        M.gaussian_w2(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3))


# ----------------------------------------------------------------------------------------- sampling

def test_sampling_proportional_floor_and_positions():
    masks = np.zeros((3, 40, 50), dtype=np.uint8)
    masks[0, :30, :40] = 1  # 1200 px
    masks[0, 30:, :40] = 2  # 400 px
    masks[0, 0, 45:] = 3  # 5 px: below the floor -> all 5
    masks[1, :10, :10] = 2
    masks[2, 5:25, 5:25] = 1
    s = M.sample_pixels(masks, per_case=200, global_per_case=300, min_per_class=16, seed=3)
    lab0 = s.label[s.case == 0]
    # quotas 149.5, 49.8, 0.6 -> largest remainders 149, 50, 1; the 5-px class is raised to its floor min(16, 5)
    assert [int((lab0 == k).sum()) for k in (1, 2, 3)] == [149, 50, 5]
    assert int((s.case == 1).sum()) == 100  # a 100-px class: all of it
    assert int((s.case == 2).sum()) == 200
    flat = torch.from_numpy(masks.reshape(3, -1).astype(np.int64))
    assert torch.equal(flat[s.case, s.index], s.label)  # every position lies in its class
    assert bool((s.label > 0).all())  # background left out by default (as the official CC)
    assert torch.equal(s.case, torch.sort(s.case, stable=True).values)  # ordered by case
    for i in range(3):  # without replacement
        assert torch.unique(s.index[s.case == i]).numel() == int((s.case == i).sum())
        g = s.global_index[s.global_case == i]
        assert g.numel() == 300 and torch.unique(g).numel() == 300 and int(g.max()) < 2000
    # determinism: same seed -> same positions (also from a torch tensor), other seed -> other positions
    again = M.sample_pixels(torch.from_numpy(masks), per_case=200, global_per_case=300, min_per_class=16, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(s[:5], again[:5]))
    other = M.sample_pixels(masks, per_case=200, global_per_case=300, min_per_class=16, seed=4)
    assert not torch.equal(s.index, other.index)
    # the official split: a fixed (equal) count per present class
    eq = M.sample_pixels(masks, per_case=200, min_per_class=16, allocation="equal")
    lab0 = eq.label[eq.case == 0]
    assert [int((lab0 == k).sum()) for k in (1, 2, 3)] == [66, 66, 5]
    bg = M.sample_pixels(masks, per_case=200, include_background=True)
    assert bool((bg.label == 0).any())


def test_gather_batches_equal_one_pass():
    rng = np.random.default_rng(5)
    masks = rng.integers(0, 3, size=(5, 16, 24))
    s = M.sample_pixels(masks, per_case=40, global_per_case=30)
    fmap = torch.from_numpy(rng.normal(size=(5, 7, 16, 24)))
    one = M.gather_pixels(s, fmap)
    two = torch.cat([M.gather_pixels(s, fmap[:2], 0), M.gather_pixels(s, fmap[2:], start=2)])
    assert torch.equal(one, two) and one.shape == (s.case.numel(), 7)
    i = 17  # row i is the feature vector at (case, y, x)
    y, x = divmod(int(s.index[i]), 24)
    assert torch.equal(one[i], fmap[int(s.case[i]), :, y, x])
    g = torch.cat([M.gather_pixels(s, fmap[:3], 0, which="global"), M.gather_pixels(s, fmap[3:], 3, "global")])
    assert g.shape == (s.global_case.numel(), 7)
    rows = M.sample_rows(s, 2, 5)
    assert torch.equal(rows.case, s.case[s.case >= 2]) and torch.equal(rows.label, s.label[s.case >= 2])
    assert M.sample_rows(s, 0, 3, "global").label is None


# ------------------------------------------------------------------------------- class consistency / FV

@pytest.mark.parametrize("n,D", [(30, 5), (4, 9)])  # more samples than dimensions, and fewer (singular S)
def test_class_consistency_matches_direct(n, D):
    X, y, c = blobs(6, n=n, D=D, shift=0.3)
    got = M.class_consistency(X, y, c)
    if n > D:
        assert got == pytest.approx(cc_direct(X, y, c), rel=1e-8)
    # the per-pair factor route and the full-covariance route (tiny eps) agree, singular or not
    assert got == pytest.approx(M.class_consistency(X, y, c, eps=1e-12), rel=1e-5)
    # squared = the gaussian_w2 value
    k0 = (y == 1) & (c == 0)
    k1 = (y == 1) & (c == 1)
    two = np.concatenate([X[k0], X[k1]])
    sq = M.class_consistency(two, np.ones(len(two), int), np.r_[np.zeros(n, int), np.ones(n, int)], squared=True)
    assert sq == pytest.approx(float(M.gaussian_w2(*gauss(X[k0]), *gauss(X[k1]))), rel=1e-7)


def test_class_consistency_kl_bhattacharyya_regularised():
    X, y, c = blobs(7, n=6, D=8)  # 6 samples in 8 dims: needs the shrinkage
    for dist, fn in (("kl", M.gaussian_kl), ("bhattacharyya", M.gaussian_bhattacharyya)):
        got = M.class_consistency(X, y, c, distance=dist)
        per_class = []
        for k in (1, 2):
            gs = []
            for i in range(5):
                m, S = gauss(X[(y == k) & (c == i)])
                gs.append((m, S))
            scale = np.mean([np.trace(S) for _, S in gs]) / 8
            gs = [(m, 0.9 * S + (0.1 * np.trace(S) / 8 + 1e-6 * scale) * np.eye(8)) for m, S in gs]
            per_class.append(np.mean([float(fn(*gs[i], *gs[j])) for i, j in itertools.combinations(range(5), 2)]))
        assert got == pytest.approx(np.mean(per_class), rel=1e-9)
        with pytest.raises(ValueError, match="not positive definite"):
            M.class_consistency(X, y, c, distance=dist, shrinkage=0.0, eps=0.0)


def test_official_average_is_the_only_difference():
    # per-pair distances computed by hand; fixed = mean over classes of mean over pairs
    L = 5
    X, y, c = blobs(8, n_cases=L, classes=(1, 2), n=25, D=4)
    X[y == 2] *= 3.0  # make the two classes' distance scales differ
    S = {}
    for k in (1, 2):
        g = [gauss(X[(y == k) & (c == i)]) for i in range(L)]
        S[k] = sum(math.sqrt(w2_direct(*g[i], *g[j])) for i, j in itertools.combinations(range(L), 2))
    P, K = L * (L - 1) / 2, 2
    fixed = M.class_consistency(X, y, c)
    official = M.class_consistency(X, y, c, official_average=True)
    assert fixed == pytest.approx((S[1] / P + S[2] / P) / K, rel=1e-8)
    a = 2 / (L * L * K)
    assert official == pytest.approx(S[1] * (1 + a) ** 2 + S[2] * (1 + a), rel=1e-8)  # the official loop
    # one class: the official value is a model-independent constant times the mean (rankings agree) ...
    one = y == 1
    const = (1 + 2 / (L * L)) * P
    for Z in (X[one], 2.5 * X[one] + 1.0):
        assert M.class_consistency(Z, y[one], c[one], official_average=True) == pytest.approx(
            const * M.class_consistency(Z, y[one], c[one]), rel=1e-10)
    # ... with two classes it is not: the ratio to the fixed mean differs from that constant
    assert official / fixed != pytest.approx(K * const, rel=1e-3)


def test_official_average_can_flip_a_ranking():
    # class 1 in 6 cases (15 pairs), class 2 in 3 cases (3 pairs): the official sums weight class 1 by its pair
    # count, the fixed mean weights the classes equally. Two "models" = two scalings of the class features.
    X, y, c = blobs(14, n_cases=6, n=20, D=4)
    keep = ~((y == 2) & (c >= 3))
    X, y, c = X[keep], y[keep], c[keep]
    base = {k: M.class_consistency(X[y == k], y[y == k], c[y == k]) for k in (1, 2)}

    def model(t1, t2):  # mean class-1 distance t1, mean class-2 distance t2 (W2 scales with the features)
        Z = X.copy()
        Z[y == 1] *= t1 / base[1]
        Z[y == 2] *= t2 / base[2]
        return Z

    A, B = model(1.0, 4.0), model(2.0, 2.0)
    assert M.class_consistency(A, y, c) == pytest.approx(2.5) and M.class_consistency(B, y, c) == pytest.approx(2.0)
    assert M.class_consistency(B, y, c) < M.class_consistency(A, y, c)  # fixed: B is more consistent
    assert (M.class_consistency(A, y, c, official_average=True)
            < M.class_consistency(B, y, c, official_average=True))  # official sums: A


def test_class_consistency_case_order_and_absent_class():
    X, y, c = blobs(9, n_cases=6, n=20, D=5)
    base = M.class_consistency(X, y, c)
    rng = np.random.default_rng(0)
    relabel = rng.permutation(6) * 7 + 3  # other case ids, other order of cases and rows
    perm = rng.permutation(len(y))
    assert M.class_consistency(X[perm], y[perm], relabel[c][perm]) == pytest.approx(base, rel=1e-10)
    # class 2 absent from case 0 (and a single stray pixel in case 1): averaged over the cases holding it
    drop = ((y == 2) & (c == 0)) | ((y == 2) & (c == 1))
    keep = ~drop
    stray = np.flatnonzero((y == 2) & (c == 1))[:1]
    sel = np.sort(np.r_[np.flatnonzero(keep), stray])
    got = M.class_consistency(X[sel], y[sel], c[sel])
    assert got == pytest.approx(cc_direct(X[sel], y[sel], c[sel]), rel=1e-8)
    # strict mode: the absent class is a clear error naming the class and the cases
    with pytest.raises(ValueError, match=r"class 2 is absent .* case\(s\) \[0, 1\]"):
        M.class_consistency(X[sel], y[sel], c[sel], absent="error")
    assert M.class_consistency(X, y, c, absent="error") == base  # nothing absent: same value


def test_feature_variety_matches_double_loop():
    rng = np.random.default_rng(10)
    G = rng.normal(size=(60, 4)) + 0.5
    cases = np.repeat(np.arange(6), 10)
    for normalize in (True, False):
        f = [G[cases == i].mean(0) for i in range(6)]
        if normalize:
            f = [v / np.linalg.norm(v) for v in f]
        e = [1 / math.sqrt(((f[i] - f[j]) ** 2).sum() + 1e-3) for i in range(6) for j in range(i + 1, 6)]
        assert M.feature_variety(G, cases, normalize=normalize) == pytest.approx(np.mean(e), rel=1e-10)
    # unit sphere: bounded; collapsed cases -> the largest energy 1/sqrt(eps)
    assert 1 / math.sqrt(4 + 1e-3) <= M.feature_variety(G, cases) <= 1 / math.sqrt(1e-3)
    same = np.tile(G[:10], (6, 1))
    assert M.feature_variety(same, cases) == pytest.approx(1 / math.sqrt(1e-3), rel=1e-6)
    with pytest.raises(ValueError, match="all-zero mean"):
        M.feature_variety(np.r_[np.zeros((10, 4)), G[10:]], cases)


def test_ccfv_combination_and_parts():
    rng = np.random.default_rng(11)
    masks = rng.integers(0, 3, size=(4, 12, 12))
    s = M.sample_pixels(masks, per_case=60, global_per_case=40)
    fmap = torch.from_numpy(rng.normal(size=(4, 6, 12, 12)))
    f, g = M.gather_pixels(s, fmap), M.gather_pixels(s, fmap, which="global")
    p = M.ccfv_parts(f, s.label, s.case, g, s.global_case)
    assert isinstance(p, M.CCFVParts)
    assert p.cc == M.class_consistency(f, s.label, s.case) and p.fv == M.feature_variety(g, s.global_case)
    q = M.CCFVParts(2.0, 0.8)
    layers = {"dec1": p, "dec2": q}
    assert M.ccfv(layers) == pytest.approx(-math.log(p.cc * p.fv) - math.log(2.0 * 0.8))
    assert M.ccfv(layers, use_fv=False) == pytest.approx(-math.log(p.cc) - math.log(2.0))
    assert M.ccfv(layers, use_cc=False) == pytest.approx(-math.log(p.fv) - math.log(0.8))
    assert M.ccfv(layers, official_direction=True) == pytest.approx(math.log(p.fv / p.cc) + math.log(0.8 / 2.0))
    assert M.ccfv([{"cc": 2.0, "fv": 0.8}]) == M.ccfv([q]) == M.ccfv([(2.0, 0.8)])
    assert M.ccfv({"a": M.CCFVParts(1.0, 0.6)}) > M.ccfv({"a": M.CCFVParts(2.0, 0.6)})  # more consistent: higher
    assert M.ccfv({"a": M.CCFVParts(1.0, 0.6)}) > M.ccfv({"a": M.CCFVParts(1.0, 0.9)})  # more variety: higher
    with pytest.raises(ValueError, match="both be False"):
        M.ccfv(layers, use_cc=False, use_fv=False)
    with pytest.raises(ValueError, match="positive"):
        M.ccfv([(0.0, 1.0)])
    # registry dispatch
    assert M.score("ccfv_parts", features=f, labels=s.label, cases=s.case, global_features=g,
                   global_cases=s.global_case) == p
    assert M.score("ccfv", parts_by_layer=layers) == M.ccfv(layers)
    info = M.REGISTRY["ccfv"]
    assert info.reference == "Yang et al., MICCAI 2023 [S]" and info.higher_is_better and info.task == "segmentation"
    assert M.REGISTRY["ccfv_parts"].returns_parts and M.REGISTRY["ccfv_parts"].defaults["official_average"] is False


def test_unit_features_remove_the_scale_of_a_layer():
    rng = np.random.default_rng(5)
    masks = rng.integers(0, 3, size=(5, 12, 12))
    s = M.sample_pixels(masks, per_case=60, global_per_case=40)
    fmap = torch.from_numpy(rng.normal(size=(5, 6, 12, 12)) + 0.5)
    f, g = M.gather_pixels(s, fmap), M.gather_pixels(s, fmap, which="global")

    def score(scale, **kw):
        return M.ccfv([M.ccfv_parts(f * scale, s.label, s.case, g * scale, s.global_case, **kw)])

    # default: W2 (unsquared) grows linearly with the scale, the energy of normalised means does not
    assert score(0.01) == pytest.approx(score(1.0) + math.log(100.0), rel=1e-9)
    # on the unit sphere the score does not see the scale; and it is the default applied to unit rows
    assert score(0.01, unit_features=True) == pytest.approx(score(1.0, unit_features=True), rel=1e-9)
    unit_f, unit_g = M.unit_rows(f), M.unit_rows(g)
    assert torch.allclose(torch.linalg.vector_norm(unit_f, dim=1), torch.ones(len(unit_f), dtype=torch.float64))
    assert M.ccfv_parts(f, s.label, s.case, g, s.global_case, unit_features=True) == \
        M.ccfv_parts(unit_f, s.label, s.case, unit_g, s.global_case)


# --------------------------------------------------------------------------------------------- bad inputs

def test_bad_inputs_raise_clear_errors():
    X, y, c = blobs(12, n_cases=4, n=10, D=3)
    only_one = ~((y == 2) & (c > 0))  # class 2 held by case 0 only
    with pytest.raises(ValueError, match="class 2 is present .* in only 1 case"):
        M.class_consistency(X[only_one], y[only_one], c[only_one])
    single = c == 0
    with pytest.raises(ValueError, match="at least 2 cases"):
        M.class_consistency(X[single], y[single], c[single])
    with pytest.raises(ValueError, match="at least 2 cases"):
        M.feature_variety(X[single], c[single])
    with pytest.raises(ValueError, match="at least 2 cases"):
        M.sample_pixels(np.ones((1, 8, 8), int))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.class_consistency(bad, y, c)
    with pytest.raises(ValueError, match="NaN"):
        M.feature_variety(bad, c)
    with pytest.raises(ValueError, match="different lengths"):
        M.class_consistency(X, y[:-1], c)
    with pytest.raises(ValueError, match="non-negative"):
        M.class_consistency(X, -y, c)
    with pytest.raises(ValueError, match="distance must be"):
        M.class_consistency(X, y, c, distance="euclid")
    masks = np.random.default_rng(0).integers(0, 2, size=(3, 8, 8))
    s = M.sample_pixels(masks, per_case=10, global_per_case=5)
    with pytest.raises(ValueError, match="spatial size"):
        M.gather_pixels(s, torch.zeros(3, 4, 4, 4))
    with pytest.raises(ValueError, match="outside"):
        M.gather_pixels(s, torch.zeros(2, 4, 8, 8), start=2)
    fm = torch.zeros(3, 4, 8, 8)
    fm[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        M.gather_pixels(s, fm)
    with pytest.raises(ValueError, match="negative"):
        M.sample_pixels(masks - 1)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        M.sample_pixels(masks + 1, num_classes=2)
    with pytest.raises(ValueError, match="no pixel of any class"):
        M.sample_pixels(np.zeros((2, 4, 4), int))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        M.sample_pixels(np.zeros((2, 4), int))


# -------------------------------------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu():
    rng = np.random.default_rng(13)
    masks = rng.integers(0, 4, size=(6, 20, 20))
    s = M.sample_pixels(torch.from_numpy(masks).cuda(), per_case=90, global_per_case=50)
    fmap = torch.from_numpy(rng.normal(size=(6, 12, 20, 20)).astype(np.float32))
    rows = {dev: (M.gather_pixels(s, fmap.to(dev)), M.gather_pixels(s, fmap.to(dev), which="global"))
            for dev in ("cpu", "cuda")}
    assert rows["cuda"][0].device.type == "cuda"
    for kw in ({}, {"official_average": True}, {"distance": "kl"}, {"distance": "bhattacharyya"}, {"eps": 1e-9}):
        a = M.ccfv_parts(rows["cpu"][0], s.label, s.case, rows["cpu"][1], s.global_case, **kw)
        b = M.ccfv_parts(rows["cuda"][0], s.label.cuda(), s.case.cuda(), rows["cuda"][1], s.global_case.cuda(), **kw)
        np.testing.assert_allclose(a, b, rtol=1e-6)
    m1, m2 = torch.randn(3, 64, dtype=torch.float64), torch.randn(3, 64, dtype=torch.float64)
    A = torch.randn(3, 64, 80, dtype=torch.float64)
    c1 = A @ A.transpose(1, 2) / 80
    w = M.gaussian_w2(m1, c1, m2, c1.flip(0))
    wg = M.gaussian_w2(m1.cuda(), c1.cuda(), m2.cuda(), c1.flip(0).cuda())
    assert wg.device.type == "cuda"
    np.testing.assert_allclose(w.numpy(), wg.cpu().numpy(), rtol=1e-8)

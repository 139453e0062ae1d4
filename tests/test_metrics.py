"""Tests of helpers.metrics: reference fixtures, properties, bad inputs, registry, set-level scores."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import helpers.metrics as M
from helpers.metrics import neighbours

CASES = ["resnet18_pneumonia_to_retina", "resnet18_retina_to_breast", "resnet18_random_to_pneumonia",
         "resnet18_breast_to_retina_n1000"]
SMALL = ["resnet18_retina_to_breast", "resnet18_random_to_pneumonia"]

FEATURE_METRICS = ["logme", "nleep", "sfda", "parc", "ncti_parts", "lp", "h_score", "regularized_h_score", "gbc",
                   "transrate", "etran_parts", "knn_accuracy", "linear_probe"]
LOGIT_METRICS = ["leep", "nce"]


@pytest.fixture(scope="module")
def expected(metric_fixtures):
    return json.loads((metric_fixtures / "expected.json").read_text())


@pytest.fixture(scope="module")
def cases(metric_fixtures):
    out = {}
    for c in CASES:
        with np.load(metric_fixtures / f"{c}.npz", allow_pickle=False) as d:
            out[c] = {k: d[k] for k in d.files}
    return out


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def blobs(n_per=30, C=3, D=8, sep=4.0, seed=0):
    g = np.random.default_rng(seed)
    centers = g.normal(size=(C, D)) * sep
    X = np.concatenate([centers[c] + g.normal(size=(n_per, D)) for c in range(C)])
    y = np.repeat(np.arange(C), n_per)
    return X.astype(np.float64), y


def call(name, X, y, logits=None):
    if name in LOGIT_METRICS:
        return M.score(name, logits=logits if logits is not None else X, labels=y)
    out = M.score(name, features=X, labels=y)
    return tuple(out) if isinstance(out, tuple) else out


# ------------------------------------------------------------------------------------------ reference fixtures

@pytest.mark.parametrize("case", CASES)
def test_fixture_deterministic(case, cases, expected):
    d, e = cases[case], expected[case]
    X, y, Z = d["features"], d["labels"], d["logits"]
    assert rel(M.logme(X, y), e["logme"]) < 1e-5
    assert rel(M.leep(Z, y), e["leep"]) < 1e-5
    assert rel(M.sfda(X, y, remedy=None), e["sfda"]) < 1e-5  # the reference arithmetic
    parts = M.ncti_parts(X, y)
    for f in ("seli", "ncc", "vc"):
        assert rel(getattr(parts, f), e["ncti_parts"][f]) < 1e-5, f


def test_sfda_reference_switch_reproduces_the_saturation(cases, expected):
    # N ~ 200 with D = 512: the reference arithmetic saturates at exactly 1.0 (remedy=None reproduces it); the
    # default form does not, and gives different scores to the three sources.
    saturated = ["resnet18_retina_to_breast", "resnet18_random_to_pneumonia", "resnet18_pneumonia_to_retina"]
    for case in saturated:
        assert expected[case]["sfda"] == 1.0
        assert M.sfda(cases[case]["features"], cases[case]["labels"], remedy=None) == pytest.approx(1.0, abs=1e-9)
    default = [M.sfda(cases[c]["features"], cases[c]["labels"]) for c in saturated]
    assert all(0 < v < 1 - 1e-3 for v in default), default
    assert len({round(v, 6) for v in default}) == 3


def test_sfda_remedies_and_bad_remedy():
    X, y = blobs(n_per=30, C=3, D=40, sep=2.0, seed=3)
    for remedy in M.SFDA_REMEDIES:
        assert 0 < M.sfda(X, y, remedy=remedy) <= 1, remedy
    assert M.sfda(X, y, remedy=16) == M.sfda(X, y, remedy="pca16")
    assert M.sfda(X, y, remedy="crossfit") == M.sfda(X, y, remedy="crossfit")  # seeded
    for bad in ("pca", "pcaX", 0, "lda", True):
        with pytest.raises(ValueError, match="remedy|components"):
            M.sfda(X, y, remedy=bad)
    assert M.score("sfda_reference", features=X, labels=y) == M.sfda(X, y, remedy=None)


@pytest.mark.parametrize("case", CASES)
def test_fixture_parc(case, cases, expected):
    # The fixtures were made by scikit-learn >= 1.5 (sign convention "v") on the float32 features, with
    # numpy 2.4.6 / OpenBLAS on 2 threads. backend="numpy" repeats that arithmetic; the label RDM's rounding
    # residue (which orders within-class ties) depends on OpenBLAS's thread partitioning, hence the 2 threads.
    from threadpoolctl import threadpool_limits

    d, e = cases[case], expected[case]
    with threadpool_limits(2, user_api="blas"):
        ref = M.parc(d["features"], d["labels"], backend="numpy", label_rdm="numpy")
        ours = M.parc(d["features"], d["labels"], label_rdm="numpy")
    assert rel(ref, e["parc"]) < 1e-5
    # default torch form: float64 PCA instead of the reference's float32 one (1 power iteration amplifies the
    # float32 rounding): within 2e-4 on these cases
    assert rel(ours, e["parc"]) < 3e-4


def test_parc_backends_differ_only_in_arithmetic():
    # float64 input: the NumPy (reference arithmetic) and torch forms compute the same thing, for both sign
    # conventions, the subsampled form, and both label RDMs
    X, y = blobs(n_per=100, C=3, D=40, sep=1.0, seed=19)
    for kw in [{}, {"sign": "u"}, {"max_exact": 200}, {"label_rdm": "numpy"}]:
        a = M.parc(X, y, backend="numpy", **kw)
        b = M.parc(torch.from_numpy(X), torch.from_numpy(y), **kw)
        assert a == pytest.approx(b, rel=1e-9), kw
    # float32 input: the NumPy form keeps float32 (as scikit-learn), the torch form computes in float64
    X32 = X.astype(np.float32)
    assert M.parc(X32, y) == M.parc(X32.astype(np.float64), y)
    assert M.parc(X32, y, backend="numpy") != M.parc(X32.astype(np.float64), y, backend="numpy")
    with pytest.raises(ValueError, match="backend"):
        M.parc(X, y, backend="jax")
    with pytest.raises(ValueError, match="sign"):
        M.parc(X, y, sign="w")


def test_parc_sign_convention_of_old_scikit_learn(cases):
    # scikit-learn 1.4.2 (U-based svd_flip) gives 2.2291119298 on this case with float64 features (measured);
    # the PCA sign convention is the whole difference to the fixtures' 1.895
    d = cases["resnet18_retina_to_breast"]
    X64 = d["features"].astype(np.float64)
    assert M.parc(X64, d["labels"], sign="u", label_rdm="numpy") == pytest.approx(2.2291119298, rel=1e-9)
    assert M.parc(X64, d["labels"], sign="v", label_rdm="numpy") == pytest.approx(1.8950916480, rel=1e-9)


# Tolerances of the iterative metrics = the reference's own run-to-run range over seeds on these cases
# (benchmarks/results/reference_agreement.txt: GMM seeds for NLEEP, whose reference is unseeded, up to 0.022;
# NCA seeds for LP, up to 0.013). Tighter would test noise; looser would let real errors through.
NLEEP_TOL, LP_TOL = 0.022, 0.013


@pytest.mark.parametrize("case", CASES)
def test_fixture_nleep(case, cases, expected):
    d = cases[case]
    assert abs(M.nleep(d["features"], d["labels"]) - expected[case]["nleep"]) < NLEEP_TOL


@pytest.mark.parametrize("case", SMALL + ["resnet18_breast_to_retina_n1000"])
def test_fixture_lp(case, cases, expected):
    d = cases[case]
    assert abs(M.lp(d["features"], d["labels"]) - expected[case]["lp"]) < LP_TOL


# FU (its reference fixture included) is tested in tests/test_fu.py.


# ------------------------------------------------------------------------------------------------ properties

FAST_FEATURE = ["logme", "sfda", "ncti_parts", "h_score", "regularized_h_score", "gbc", "transrate",
                "etran_parts", "knn_accuracy", "nleep", "lp", "parc"]


@pytest.mark.parametrize("name", FAST_FEATURE + LOGIT_METRICS)
def test_label_renaming_invariance(name):
    X, y = blobs(C=3, D=6, sep=1.5, seed=1)
    perm = np.array([2, 0, 1])
    a = call(name, X, y)
    b = call(name, X, perm[y])
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


ORDER_INVARIANT = ["logme", "sfda", "h_score", "regularized_h_score", "gbc", "transrate", "etran_parts",
                   "knn_accuracy", "ncti_parts"]


@pytest.mark.parametrize("name", ORDER_INVARIANT + LOGIT_METRICS)
def test_sample_order_invariance(name):
    X, y = blobs(n_per=40, C=3, D=6, sep=1.5, seed=2)  # N >= 10 D: exact PCA for NCTI
    order = np.random.default_rng(0).permutation(len(y))
    np.testing.assert_allclose(call(name, X, y), call(name, X[order], y[order]), rtol=1e-6, atol=1e-9)


def test_leep_nce_closed_forms():
    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[y] * 50.0
    assert M.leep(perfect, y) == pytest.approx(0.0, abs=1e-9)
    assert M.nce(perfect, y) == pytest.approx(0.0, abs=1e-12)
    # a source head that predicts the same class for everybody: NCE = -H(Y) = -log 3, LEEP = log(1/3)
    const = np.tile([5.0, 0.0, 0.0], (6, 1))
    assert M.nce(const, y) == pytest.approx(-math.log(3))
    assert M.leep(const, y) == pytest.approx(math.log(1 / 3), abs=1e-9)


def test_h_score_and_transrate_closed_forms():
    X, y = blobs(n_per=20, C=2, D=3, seed=3)
    f = X
    covf = np.cov(f, rowvar=False)
    g = np.stack([f[y == c].mean(0) for c in range(2)])[y]
    assert M.h_score(X, y) == pytest.approx(np.trace(np.linalg.pinv(covf) @ np.cov(g, rowvar=False)), rel=1e-9)
    Zc = X - X.mean(0)

    def r(Z, eps=1e-4):
        return 0.5 * np.linalg.slogdet(np.eye(Z.shape[1]) + Z.T @ Z / (Z.shape[0] * eps))[1]

    want = r(Zc) - (r(Zc[y == 0]) + r(Zc[y == 1])) / 2
    assert M.transrate(X, y) == pytest.approx(want, rel=1e-9)
    assert M.transrate(X, y, variant="paper") != pytest.approx(want)


def _official_gbc(X, y, gaussian="spherical"):
    """google-research stable_transfer gbc.py, line for line in NumPy (population variance, clamp 1e-4)."""
    X = np.asarray(X, dtype=np.float64)
    stats = {}
    for c in np.unique(y):
        f = X[y == c]
        stats[c] = (f.mean(0), np.maximum(f.var(0), 1e-4))
    total = 0.0
    for c1 in stats:
        for c2 in stats:
            if c1 == c2:
                continue
            (m1, s1), (m2, s2) = stats[c1], stats[c2]
            if gaussian == "spherical":
                s1, s2 = s1.mean(), s2.mean()
            avg = (s1 + s2) / 2
            bd = np.sum((m1 - m2) ** 2 / avg) / 8 + 0.5 * (np.sum(np.log(avg)) - 0.5 * np.sum(np.log(s1))
                                                           - 0.5 * np.sum(np.log(s2)))
            total += np.exp(-bd)
    return -total


@pytest.mark.parametrize("case", SMALL)
@pytest.mark.parametrize("gaussian", ["spherical", "diagonal"])
def test_gbc_matches_the_official_code_on_real_features(case, gaussian, cases):
    d = cases[case]
    ref = _official_gbc(d["features"], d["labels"], gaussian)
    assert M.gbc(d["features"], d["labels"], gaussian=gaussian) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    if abs(ref) > 1e-6:  # (fully separated classes give ~0 in both forms)
        unbiased = M.gbc(d["features"], d["labels"], gaussian=gaussian, ddof=1)
        assert unbiased != pytest.approx(ref, rel=1e-6)  # the earlier (ddof 1) form is a different number


def test_gbc_separated_and_overlapping():
    X, y = blobs(n_per=30, C=3, D=4, sep=50.0, seed=4)
    assert M.gbc(X, y) == pytest.approx(0.0, abs=1e-6)
    assert M.gbc(X, y, gaussian="diagonal") == pytest.approx(0.0, abs=1e-6)
    g = np.random.default_rng(0)
    Xo = g.normal(size=(200, 4))
    yo = np.repeat([0, 1], 100)
    assert M.gbc(Xo, yo) < -1.5  # two almost identical Gaussians: BC ~ 1 per ordered pair


def test_knn_and_lp_on_separated_blobs():
    X, y = blobs(n_per=15, C=3, D=5, sep=30.0, seed=5)
    assert M.knn_accuracy(X, y, k=3) == 1.0
    assert M.lp(X, y) == pytest.approx(1.0)
    assert M.linear_probe(X, y) == 1.0
    assert M.sfda(X, y) > 0.9
    assert M.parc(X, y) > 50


def test_logme_better_for_informative_features():
    X, y = blobs(n_per=40, C=3, D=8, sep=3.0, seed=6)
    noise = np.random.default_rng(1).normal(size=X.shape)
    assert M.logme(X, y) > M.logme(noise, y)
    assert M.leep(X[:, :3] * 3, y) > M.leep(noise[:, :3], y)


def test_sfda_does_not_mutate_input():
    X, y = blobs(n_per=20, C=3, D=6, seed=7)
    X32 = X.astype(np.float32)
    before = X32.copy()
    M.sfda(X32, y)
    np.testing.assert_array_equal(X32, before)
    t = torch.from_numpy(X.copy())
    tb = t.clone()
    M.sfda(t, torch.from_numpy(y))
    assert torch.equal(t, tb)


def test_numpy_and_torch_inputs_agree():
    X, y = blobs(seed=8)
    for name in ["logme", "sfda", "gbc", "parc", "knn_accuracy"]:
        a = M.score(name, features=X, labels=y)
        b = M.score(name, features=torch.from_numpy(X), labels=torch.from_numpy(y))
        assert a == pytest.approx(b, rel=1e-12)


def test_deterministic_repeats():
    X, y = blobs(n_per=20, C=3, D=8, sep=1.0, seed=9)
    for name in ["nleep", "lp", "linear_probe", "parc", "ncti_parts"]:
        assert call(name, X, y) == call(name, X, y)


def test_nleep_log_variant_and_float32():
    X, y = blobs(n_per=30, C=2, D=10, sep=2.0, seed=10)
    v = M.nleep(X.astype(np.float32), y)
    assert 0 < v <= 1
    assert M.nleep(X, y, log=True) == pytest.approx(math.log(M.nleep(X, y)), abs=0.2)
    assert M.nleep(X, y, log=True) <= math.log(M.nleep(X, y)) + 1e-12  # Jensen
    assert 0 < M.nleep(X, y, pca_dim=4) <= 1


# ---------------------------------------------------------------------------------------------- bad inputs

BAD_FEATURE_METRICS = ["logme", "nleep", "sfda", "parc", "ncti_parts", "lp", "h_score", "regularized_h_score",
                       "gbc", "transrate", "etran_parts", "knn_accuracy", "linear_probe"]


@pytest.mark.parametrize("name", BAD_FEATURE_METRICS + LOGIT_METRICS)
def test_bad_inputs_raise_clear_errors(name):
    X, y = blobs(n_per=20, C=3, D=6, seed=11)
    with pytest.raises(ValueError, match="different lengths"):
        call(name, X, y[:-1])
    with pytest.raises(ValueError, match="0..C-1"):
        call(name, X, np.where(y == 1, 5, y))  # gap: class 1 missing
    with pytest.raises(ValueError, match="0..C-1"):
        call(name, X, y - 1)
    with pytest.raises(ValueError, match="single class"):
        call(name, X, np.zeros_like(y))
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        call(name, Xn, y)
    Xi = X.copy()
    Xi[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        call(name, Xi, y)
    with pytest.raises(ValueError, match="2-D"):
        call(name, X[:, 0], y)


@pytest.mark.parametrize("name", ["logme", "nleep", "sfda", "parc", "ncti_parts", "lp", "h_score",
                                  "regularized_h_score", "gbc", "transrate", "etran_parts"])
def test_constant_features_raise(name):
    X = np.ones((40, 5))
    y = np.repeat([0, 1], 20)
    with pytest.raises(ValueError, match="constant"):
        call(name, X, y)


@pytest.mark.parametrize("name", BAD_FEATURE_METRICS + LOGIT_METRICS)
def test_float16_and_small_n_large_d_are_finite(name):
    X, y = blobs(n_per=10, C=3, D=6, seed=12)
    out = call(name, X.astype(np.float16), y)
    assert np.all(np.isfinite(out))
    if name in LOGIT_METRICS:
        return
    g = np.random.default_rng(0)
    Xw = g.normal(size=(30, 200)) + np.repeat(g.normal(size=(3, 200)), 10, axis=0)  # N < D
    out = call(name, Xw, np.repeat([0, 1, 2], 10))
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", BAD_FEATURE_METRICS + LOGIT_METRICS)
def test_class_with_one_sample(name):
    X, y = blobs(n_per=20, C=3, D=4, seed=13)
    keep = np.r_[np.nonzero(y != 2)[0], np.nonzero(y == 2)[0][:1]]
    X, y = X[keep], y[keep]
    if name == "gbc":  # population variance (official): a single sample has variance 0, clamped to 1e-4
        assert np.isfinite(call(name, X, y))
        with pytest.raises(ValueError, match="at least 2 samples per class"):
            M.gbc(X, y, ddof=1)
    else:
        assert np.all(np.isfinite(call(name, X, y)))


def test_multilabel_supported_and_rejected():
    g = np.random.default_rng(14)
    X = g.normal(size=(60, 8))
    Y = (g.random((60, 4)) < 0.3).astype(np.int64)
    X[:, :4] += 3 * Y
    for name in ["logme", "parc", "knn_accuracy", "linear_probe"]:
        assert np.isfinite(M.score(name, features=X, labels=Y))
    assert M.knn_accuracy(X, Y) > 0.7
    for name in ["sfda", "nleep", "gbc", "transrate", "ncti_parts", "lp", "h_score", "etran_parts"]:
        with pytest.raises(ValueError, match="multi-label"):
            M.score(name, features=X, labels=Y)
    with pytest.raises(ValueError, match="multi-label"):
        M.leep(X, Y)


def test_labels_column_vector_accepted():
    X, y = blobs(seed=15)
    assert M.logme(X, y[:, None]) == M.logme(X, y)


# ---------------------------------------------------------------------------------------------- set level

def test_ncti_setlevel_sign_and_bug_switch():
    parts = {"a": M.NCTIParts(10.0, 0.5, 1.0), "b": M.NCTIParts(20.0, 0.9, 3.0), "c": (15.0, 0.7, 2.0),
             "d": M.NCTIParts(12.0, 0.6, 1.5)}
    s = M.ncti(parts)
    assert s == pytest.approx({"a": 0.0, "b": 1.0, "c": 0.5, "d": 0.2 + 0.25 - 0.25})
    bug = M.ncti(parts, sign_bug=True)
    assert bug == pytest.approx({"a": 0.0, "b": 3.0, "c": 1.5, "d": 0.2 + 0.25 + 0.25})
    # the fix differs from the published combination only by the sign of the normalised vc
    for k in parts:
        assert bug[k] - s[k] == pytest.approx(2 * (parts[k][2] - 1.0) / 2.0)


def _order(scores):
    return sorted((k for k in scores if np.isfinite(scores[k])), key=lambda k: -scores[k])


# Four candidates plus the target's own source (breastmnist for target BreastMNIST), whose extreme part
# re-weights the normalisation: [D] leaves it out before normalising, and so must every set-level score.
SELF_NCTI = {"a": M.NCTIParts(10.0, 0.50, 1.0), "b": M.NCTIParts(20.0, 0.60, 3.0),
             "c": M.NCTIParts(15.0, 0.90, 2.0), "d": M.NCTIParts(12.0, 0.55, 1.2),
             "breastmnist": M.NCTIParts(100.0, 0.55, 2.0)}
SELF_LP = {"a": 0.7, "b": 0.5, "c": 0.9, "d": 0.6, "breastmnist": 0.1}
SELF_FU = {"a": 2.0, "b": 1.0, "c": 3.0, "d": 2.5, "breastmnist": 2.0}
SELF_ETRAN = {"a": M.ETranParts(1.0, 0.6, 0.0), "b": M.ETranParts(3.0, 0.5, 0.0),
              "c": M.ETranParts(2.0, 0.2, 0.0), "d": M.ETranParts(1.5, 0.3, 0.0),
              "breastmnist": M.ETranParts(100.0, 0.4, 0.0)}


@pytest.mark.parametrize("name", ["ncti", "lp_fu", "etran"])
def test_setlevel_leaves_the_targets_own_source_out_before_normalising(name):
    def run(target, drop_self=False):
        def d(x):
            return {k: v for k, v in x.items() if not (drop_self and k == "breastmnist")}
        if name == "ncti":
            return M.ncti(d(SELF_NCTI), target=target)
        if name == "etran":
            return M.etran(d(SELF_ETRAN), target=target)
        return M.lp_fu(d(SELF_LP), d(SELF_FU), target=target)

    excluded = run("BreastMNIST")
    assert np.isnan(excluded["breastmnist"]) and set(excluded) == set(SELF_LP)
    # left out = normalised over the four other candidates only
    assert {k: v for k, v in excluded.items() if k != "breastmnist"} == pytest.approx(run(None, drop_self=True))
    included = run(None)
    others = {k: v for k, v in included.items() if k != "breastmnist"}
    assert _order(others) != _order(excluded), "the crafted self source must reorder the others when included"


def test_lp_fu_self_in_fu_is_D_s_exact_form_on_its_published_tables():
    """[D] kept the self source in FU's min-max (its LP column has no self value): ``self_in_fu=True`` gives
    :func:`helpers.evaluation.minmax_product` over the whole published column on every target, and the default
    (self left out of both, PROTOCOL.md) moves dermamnist only."""
    from helpers import reference as R
    from helpers.evaluation import minmax_product

    lp, fu = R.load_scores("lp"), R.load_scores("fu")
    whole = minmax_product(lp, fu, exclude_self=False)
    moved = []
    for t in lp.columns:
        ok = lp[t].notna() & fu[t].notna()
        d_form = M.lp_fu(lp[t][ok].to_dict(), fu[t][ok].to_dict(), target=t, self_in_fu=True)
        ours = M.lp_fu(lp[t][ok].to_dict(), fu[t][ok].to_dict(), target=t)
        # the self source: LP is NaN in [D]'s table, so it is not in `ok`; hand its FU over as [D] had it
        self_rows = [s for s in fu.index if s.lower() == t.lower() and np.isfinite(fu.at[s, t])]
        if self_rows:
            lp_s = {**lp[t][ok].to_dict(), **{s: 0.0 for s in self_rows}}
            fu_s = {**fu[t][ok].to_dict(), **{s: fu.at[s, t] for s in self_rows}}
            d_form = M.lp_fu(lp_s, fu_s, target=t, self_in_fu=True)
            ours = M.lp_fu(lp_s, fu_s, target=t)
        cand = [s for s in ok.index[ok] if s.lower() != t.lower()]
        assert [d_form[s] for s in cand] == pytest.approx(whole.loc[cand, t].tolist(), abs=1e-12), t
        if any(abs(d_form[s] - ours[s]) > 1e-12 for s in cand):
            moved.append(t)
    assert moved == ["dermamnist"]


def test_setlevel_target_with_only_its_own_source_is_an_error():
    with pytest.raises(ValueError, match="no candidate source"):
        M.lp_fu({"breastmnist": 1.0}, {"breastmnist": 2.0}, target="breastmnist")


def test_lp_fu_and_etran_setlevel():
    out = M.lp_fu({"a": 0.7, "b": 0.5, "c": 0.9, "d": 0.6}, {"a": 2.0, "b": 1.0, "c": 3.0, "d": 2.5})
    assert out == pytest.approx({"a": 0.5 * 0.5, "b": 0.0, "c": 1.0, "d": 0.25 * 0.75})
    with pytest.raises(ValueError, match="same sources"):
        M.lp_fu({"a": 1.0}, {"b": 1.0})
    e = M.etran({"a": M.ETranParts(1.0, 0.2, -1.0), "b": M.ETranParts(3.0, 0.4, -2.0),
                 "c": M.ETranParts(2.0, 0.3, -1.5), "d": M.ETranParts(1.5, 0.4, -1.0)})
    assert e == pytest.approx({"a": 0.0, "b": 2.0, "c": 1.0, "d": 1.25})
    e3 = M.etran({"a": M.ETranParts(1.0, 0.2, -1.0), "b": M.ETranParts(3.0, 0.4, -2.0)}, include_svd=True)
    assert e3 == pytest.approx({"a": 1.0, "b": 2.0})
    assert M.lp_fu({"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 2.0}) == {"a": 0.0, "b": 0.0}  # documented tie rule


def test_setlevel_from_real_parts(cases):
    parts = {c: M.ncti_parts(cases[c]["features"], cases[c]["labels"]) for c in SMALL}
    s = M.ncti(parts)
    assert set(s) == set(SMALL) and all(np.isfinite(v) for v in s.values())
    assert M.score("ncti", parts_by_source=parts) == s


# ------------------------------------------------------------------------------------------------ registry

def test_registry_complete_and_dispatch():
    names = M.list_metrics()
    for want in ["logme", "leep", "nleep", "sfda", "parc", "ncti_parts", "lp", "h_score", "regularized_h_score",
                 "nce", "gbc", "transrate", "etran_parts", "knn_accuracy", "linear_probe", "fu", "ncti", "etran",
                 "lp_fu"]:
        assert want in names
        info = M.REGISTRY[want]
        assert info.reference and info.inputs and isinstance(info.higher_is_better, bool)
        assert isinstance(info.defaults, dict)
    assert set(M.list_metrics(set_level=True)) == {"ncti", "etran", "lp_fu"}
    assert set(M.list_metrics(inputs="logits")) == {"leep", "nce"}
    assert M.REGISTRY["parc"].defaults["n_dims"] == 32 and M.REGISTRY["parc"].defaults["random_state"] == 1919
    assert M.REGISTRY["ncti_parts"].defaults["n_components"] == 64
    assert M.REGISTRY["lp"].defaults["random_state"] == 42
    assert {n for n in names if M.REGISTRY[n].multilabel} == {"logme", "parc", "knn_accuracy", "linear_probe"}
    X, y = blobs(seed=16)
    assert M.score("gbc", features=X, labels=y, logits=X, gaussian="diagonal") == M.gbc(X, y, gaussian="diagonal")
    with pytest.raises(ValueError, match="unknown metric"):
        M.score("nope", features=X, labels=y)
    with pytest.raises(ValueError, match="unexpected"):
        M.score("logme", features=X, labels=y, bogus=1)


def test_large_n_forms_stay_close_to_exact():
    X, y = blobs(n_per=300, C=3, D=8, sep=1.0, seed=17)
    exact = M.parc(X, y, max_exact=10_000)
    approx = M.parc(X, y, max_exact=400)
    assert abs(exact - approx) < 3.0  # x100 scale: the subsample estimates the same rank correlation
    assert abs(M.lp(X, y) - M.lp(X, y, nca_max_n=300)) < 0.05


def _overlapping(n=1500, C=4, D=16, seed=20):
    g = np.random.default_rng(seed)
    y = g.integers(0, C, n)
    y[:C] = np.arange(C)
    X = g.normal(size=(C, D))[y] * 0.5 + g.normal(size=(n, D))
    return X, y


def test_knn_and_lp_query_subset_forms():
    X, y = _overlapping()
    N = len(y)
    exact_knn = M.knn_accuracy(X, y)
    assert exact_knn == M.knn_accuracy(X, y, max_exact=N)  # at or below the threshold: the exact form
    assert 0.5 < exact_knn < 0.95  # a case with errors to estimate
    errs_knn = []
    for seed in range(3):
        a = M.knn_accuracy(X, y, max_exact=500, subsample_seed=seed)
        assert a == M.knn_accuracy(X, y, max_exact=500, subsample_seed=seed)  # deterministic given the seed
        errs_knn.append(a - exact_knn)
    # stratified subset of 500 of 1500: standard error ~ sqrt(p (1 - p) / 500 * 2/3) ~ 0.017
    assert max(map(abs, errs_knn)) < 0.06 and abs(np.mean(errs_knn)) < 0.04
    assert len(set(errs_knn)) > 1  # the seed selects the subset
    # LP's 5-NN step, NCA fitted on all samples (nca_max_n) so that only the query subset differs
    Xl, yl = X[:800], y[:800]
    exact_lp = M.lp(Xl, yl)
    errs_lp = [M.lp(Xl, yl, max_exact=300, subsample_seed=seed) - exact_lp for seed in range(2)]
    assert M.lp(Xl, yl, max_exact=300, subsample_seed=1) - exact_lp == errs_lp[1]
    assert max(map(abs, errs_lp)) < 0.06
    # per query nothing is approximated: the subset's neighbours are the exact leave-one-out neighbours
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    p = neighbours.prepare(Xt, yt, metric="knn_accuracy")
    qi, w = neighbours._query_subset(p, 500, 0)
    assert w.sum().item() == pytest.approx(1.0)
    full = neighbours._knn_indices(Xt, Xt, 5, exclude_self=True)
    sub = neighbours._knn_indices(Xt[qi], Xt, 5, exclude_self=True, q_index=qi)
    assert torch.equal(full[qi], sub)
    # multi-label: a uniform query subset
    Y = (np.random.default_rng(0).random((N, 3)) < 0.4).astype(np.int64)
    Xm = X[:, :3] + 2 * Y
    assert abs(M.knn_accuracy(Xm, Y, max_exact=500) - M.knn_accuracy(Xm, Y)) < 0.05
    with pytest.raises(ValueError, match="max_exact"):
        M.knn_accuracy(X, y, max_exact=0)


def test_knn_never_holds_n_by_n(monkeypatch):
    # the distance blocks given to topk are bounded by the chunk budget, not by N x N
    X, y = _overlapping(n=3000, D=8)
    sizes = []
    real_topk = torch.topk

    def spy(t, *a, **kw):
        sizes.append(t.numel())
        return real_topk(t, *a, **kw)

    monkeypatch.setattr(torch, "topk", spy)
    budget = 1 << 20
    Xt = torch.from_numpy(X)
    neighbours._knn_indices(Xt[:700], Xt, 5, exclude_self=True, q_index=torch.arange(700), budget=budget)
    assert sizes and max(sizes) <= budget < len(y) ** 2
    sizes.clear()
    M.knn_accuracy(X, y, max_exact=1000)
    M.lp(X, y, max_exact=1000, nca_max_n=500)
    assert max(sizes) <= 1000 * len(y) < len(y) ** 2  # query blocks only (default budget 2^24 > 3e6)
    assert neighbours._chunk_rows(100_000) * 100_000 <= 1 << 24


# ------------------------------------------------------------------------------------------------------ GPU

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(cases):
    d = cases["resnet18_breast_to_retina_n1000"]
    X, y, Z = d["features"], d["labels"], d["logits"]
    Xg, yg, Zg = (torch.from_numpy(a).cuda() for a in (X, y, Z))
    for name in ["logme", "sfda", "parc", "h_score", "regularized_h_score", "gbc", "transrate", "knn_accuracy",
                 "nleep", "lp"]:
        a = M.score(name, features=X, labels=y)
        b = M.score(name, features=Xg, labels=yg)
        tol = 0.03 if name in ("nleep", "lp") else 1e-4
        assert abs(a - b) <= tol * max(1.0, abs(a)), name
    for name in ["leep", "nce"]:
        assert M.score(name, logits=Z, labels=y) == pytest.approx(M.score(name, logits=Zg, labels=yg), rel=1e-6)
    np.testing.assert_allclose(M.ncti_parts(X, y), M.ncti_parts(Xg, yg), rtol=1e-4)
    np.testing.assert_allclose(M.etran_parts(X, y), M.etran_parts(Xg, yg), rtol=1e-4)


def test_ncti_svd_solver_branch_matches_sklearn():
    # large feature variance: the shrinkage exp(-sum of top-32 variances) underflows to 1e-10 and NCTI uses
    # scikit-learn's svd-solver LDA (the reference behaviour)
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    X, y = blobs(n_per=40, C=3, D=80, sep=3.0, seed=18)
    X = X * 10
    parts = M.ncti_parts(X, y)
    from sklearn.decomposition import PCA

    Z = PCA(64, random_state=42).fit_transform(X)
    clf = LinearDiscriminantAnalysis(solver="svd")
    low = clf.fit_transform(Z, y)
    low -= low.mean(0)
    pr = clf.predict_proba(Z)
    assert parts.seli == pytest.approx(np.linalg.norm(low, ord="nuc"), rel=1e-6)
    assert parts.ncc == pytest.approx(pr[np.arange(len(y)), y].mean(), rel=1e-6)

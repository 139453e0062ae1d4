"""The reader of [R]'s published tables, on the copy committed under data/reference/juodelyte2023."""
import numpy as np
import pandas as pd
import pytest

from helpers import reference_r as R
from helpers.paths import PROJECT_ROOT

REF = PROJECT_ROOT / "data" / "reference" / "juodelyte2023"


@pytest.fixture(scope="module")
def cca():
    return R.load_cca(ref_dir=REF)


def test_reference_dir_is_the_project_copy():
    assert R.reference_dir() == REF
    assert (REF / "LICENSE").is_file() and "MIT" in (REF / "LICENSE").read_text()
    assert (REF / "README.md").is_file()
    with pytest.raises(FileNotFoundError):
        R.reference_dir(PROJECT_ROOT / "no-such-folder")


def test_auc_table():
    auc = R.load_auc(REF)
    assert len(auc) == 175 and set(auc.target) == set(R.TARGETS) and set(auc.source) == set(R.SOURCES)
    assert auc.auc.between(0, 1).all() and set(auc.fold) == {1, 2, 3, 4, 5}
    counts = auc.groupby(["source", "freeze"]).size()
    assert counts[("ImageNet", True)] == counts[("ImageNet", False)] == 35 and counts[("random", False)] == 35
    assert ("random", True) not in counts.index
    one = auc[(auc.target == "isic") & (auc.source == "ImageNet") & ~auc.freeze & (auc.fold == 1)]
    assert one.auc.item() == pytest.approx(0.9527204719209004, abs=1e-15)
    # the published summary is the mean (1 decimal) and sample SD (2 decimals) of these folds, in percent
    summary = R.load_auc_summary(REF)
    assert len(summary) == 35
    ours = auc.groupby(["target", "source", "freeze"]).auc.agg(["mean", "std"]) * 100
    both = summary.set_index(["target", "source", "freeze"]).join(ours)
    assert (both["mean"] - both.mean_percent).abs().max() <= 0.05 + 1e-9
    assert (both["std"] - both.sd_percent).abs().max() <= 0.005 + 1e-9
    assert both.loc[("breast", "ImageNet", False), "mean_percent"] == 90.5


def test_cca_table_counts_and_ranges(cca):
    assert len(cca) == 7 * 14 * 5 * 5
    assert cca.cca.between(0, 1).all() and cca.cca.notna().all()
    kinds = cca.drop_duplicates(["target", "model1", "model2"]).groupby("pair_kind").size()
    assert kinds.to_dict() == {"pretrained_vs_finetuned": 28, "finetuned_across_sources": 14,
                               "pretrained_across_sources": 7, "vs_untrained": 28, "untrained_vs_untrained": 7,
                               "freeze_vs_no_freeze": 14}
    assert set(cca.pair_kind) == set(R.PAIR_KINDS)
    assert list(cca.stage.cat.categories) == list(R.STAGES)
    assert dict(zip(cca.stage, cca.layer)) == {"conv1": "relu", "block1": "layer1", "block2": "layer2",
                                                "block3": "layer3", "block4": "layer4"}
    # a value read back: breast, RadImageNet fine-tuned vs RadImageNet, fold 1, conv1 (first row of the CSV)
    row = cca[(cca.target == "breast") & (cca.model1 == "breast-RadImageNet-freezeFalse")
              & (cca.model2 == "RadImageNet") & (cca.fold == 1) & (cca.stage == "conv1")]
    assert row.cca.item() == pytest.approx(0.7105633383832106, abs=1e-15)
    assert row.pair_kind.item() == "pretrained_vs_finetuned" and row.pair.item() == "RadImageNet-FT vs RadImageNet"
    ft = cca[cca.role1 == "finetuned"]
    assert ft.freeze1.notna().all() and cca[cca.role1 != "finetuned"].freeze1.isna().all()


def test_untrained_floor_matches_protocol(cca):
    """PROTOCOL.md section 8: random vs random is about 0.35-0.45 beyond conv1 in [R]'s tables."""
    floor = R.cca_summary(cca)
    floor = floor[(floor.pair_kind == "untrained_vs_untrained") & (floor.stage != "conv1")]
    assert len(floor) == 7 * 4 and (floor.n_folds == 5).all()
    assert floor["mean"].between(0.30, 0.50).all()
    assert 0.35 <= floor["mean"].median() <= 0.45


def test_parse_model_and_pair_kind():
    m = R.parse_model("pcam-small-RadImageNet-freezeTrue")
    assert (m.role, m.source, m.target, m.freeze) == ("finetuned", "RadImageNet", "pcam-small", True)
    assert m.label == "RadImageNet-FT (freeze)"
    assert R.parse_model("random").role == "untrained" and R.parse_model("ImageNet").role == "pretrained"
    assert R.pair_kind("ImageNet", "chest-ImageNet-freezeTrue") == "pretrained_vs_finetuned"
    assert R.pair_kind("chest-ImageNet-freezeTrue", "chest-ImageNet-freezeFalse") == "freeze_vs_no_freeze"
    with pytest.raises(ValueError, match="unrecognised"):
        R.parse_model("resnet")
    with pytest.raises(ValueError, match="none of"):
        R.pair_kind("ImageNet", "chest-RadImageNet-freezeTrue")


def test_similarity_vs_gain_rebuilds_the_published_tables():
    table = R.similarity_vs_gain(REF)
    assert len(table) == 2 * 7 * 5 * 5
    for source, name in (("ImageNet", "simVSaucImNet.csv"), ("RadImageNet", "simVSaucRadNet.csv")):
        pub = pd.read_csv(REF / "results" / name).melt(
            id_vars=["model1", "model2", "fold", "stimuli"], var_name="stage", value_name="cca")
        pub["fold"] = pub.fold.str.removeprefix("fold").astype(int)
        mine = table[table.source == source].merge(pub, left_on=["target", "fold", "stage"],
                                                   right_on=["stimuli", "fold", "stage"])
        assert len(mine) == 175 and (mine.cca_x == mine.cca_y).all()
    row = table[(table.source == "ImageNet") & (table.target == "breast") & (table.fold == 1)].iloc[0]
    assert row.relative_gain == pytest.approx((0.8982873851294904 - row.auc_random) / row.auc_random)
    assert (table.auc_random > 0).all() and table.relative_gain.notna().all()
    assert len(R.similarity_vs_gain(REF, freeze=True)) == 350


def test_gain_correlation():
    table = R.similarity_vs_gain(REF)
    corr = R.gain_correlation(table, n_boot=500)
    assert len(corr) == 10 and (corr.n == 35).all()
    assert ((corr.ci_low <= corr.r) & (corr.r <= corr.ci_high)).all()
    g = table[(table.source == "RadImageNet") & (table.stage == "block3")]
    r = corr.set_index(["source", "stage"]).loc[("RadImageNet", "block3"), "r"]
    assert r == pytest.approx(np.corrcoef(g.cca, g.relative_gain)[0, 1])
    again = R.gain_correlation(table, n_boot=500)
    pd.testing.assert_frame_equal(corr, again)  # seeded
    spear = R.gain_correlation(table, method="spearman", resample="targets", n_boot=300)
    assert (spear.ci_high - spear.ci_low).mean() > (corr.ci_high - corr.ci_low).mean()  # clusters are wider
    with pytest.raises(ValueError, match="method"):
        R.gain_correlation(table, method="kendall")


def test_prediction_similarity_table():
    ps = R.load_prediction_similarity(REF)
    assert len(ps) == 70 and ps.observed.between(0, 1).all()
    raw = pd.read_csv(REF / "results" / "similarity.csv")
    first = raw[(raw.target == "isic") & (raw.freeze == "freezeFalse") & (raw.fold == "fold1")]
    row = ps[(ps.target == "isic") & ~ps.freeze & (ps.fold == 1)].iloc[0]
    assert row.observed == first[first.prob == "real"].value.item()
    assert row.r_baseline == first[first.prob == "rand"].value.item()
    # A's accuracy reproduces [R]'s baseline; the correct baseline's range contains it when acc_B = acc_A fits
    a = ps.accuracy_a
    np.testing.assert_allclose(a**2 + (1 - a) ** 2, ps.r_baseline, atol=1e-12)
    ok = ps[ps.r_baseline_feasible]
    assert ((ok.correct_baseline_low <= ok.r_baseline + 1e-12) & (ok.r_baseline <= ok.correct_baseline_high + 1e-12)).all()
    assert ((ps.kappa_low <= ps.kappa_high + 1e-12)).all()
    # every range is attainable: a B with the bound's accuracy and the observed agreement exists
    for _, r in ps.iterrows():
        for b in (r.accuracy_b_low, r.accuracy_b_high):
            d = 1 - r.observed
            assert abs(b - r.accuracy_a) <= d + 1e-9 and d <= min(r.accuracy_a, 1 - b) + min(1 - r.accuracy_a, b) + 1e-9
    # breast fold 2: A right on 88.5 %, yet 24.4 % disagreement: B cannot be as accurate as A
    bad = ps[(ps.target == "breast") & ~ps.freeze & (ps.fold == 2)].iloc[0]
    assert not bad.r_baseline_feasible and bad.accuracy_b_high < bad.accuracy_a
    assert ps.auc_a.notna().all() and ps.auc_b.notna().all()

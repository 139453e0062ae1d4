"""Loaders of the public benchmarks with per-target fine-tuned ground truth, into the tidy format.

Each loader reads only files under ``data/reference/<name>/`` (numeric tables copied from the authors'
repositories; see each folder's README.md for repository, commit, file names and licence) and returns the
validated long table of :mod:`helpers.benchmarks.format`. :data:`BENCHMARKS` lists them with what they hold;
:func:`load` and :func:`load_all` call them by name.

Score directions follow each paper: every score here is "higher = predicted better" except where a loader
says otherwise (Godau et al.'s task distances: lower = closer = predicted better; PACTran in
model-selection-nlp, which its authors negate).

Ground-truth-only benchmarks (SFDA, EMMS, TransferGraph, PARC's oracle) published fine-tuned results but no
per-candidate score; their tables carry the leave-one-target-out prior (:func:`.evidence.loto_prior_table`) and,
where the repository states it, a static baseline such as the parameter count.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from .. import reference as ref
from ..names import canonical_name
from ..paths import PROJECT_ROOT
from .evidence import loto_prior_table
from .format import BenchmarkError, validate, validate_replicates

REFERENCE = PROJECT_ROOT / "data" / "reference"


def _path(name: str, *parts: str):
    p = REFERENCE.joinpath(name, *parts)
    if not p.is_file():
        raise BenchmarkError(f"benchmark file {p} is missing (a fresh clone has it under data/reference/)")
    return p


# ----------------------------------------------------------------------------------------------------
# Chaves et al., TMLR 2024


#: Chaves et al.'s 14 scorers (``inputs/transf_scores.csv``'s ``transf_metric``), ``imagenet`` = the
#: architecture's ImageNet top-1 accuracy (a static baseline)
CHAVES_SCORERS = ("imagenet", "hscore_score", "nce_score", "leep_score", "nleep_score", "parc_score",
                  "reg_hscore_score", "sfda_score", "logme_score", "gbc_score", "pactran_score",
                  "etran_energy_score", "ncti_score", "tmi_score")
#: Chaves et al.'s overall grouped weighted tau as quoted in issue 21 (the other 10 scorers' overall values
#: were not found in the repository's committed files: its result JSONs are symlinks to the authors' machine)
CHAVES_PUBLISHED_OVERALL = {"etran_energy_score": 0.6677, "ncti_score": 0.6634, "imagenet": 0.6455,
                            "sfda_score": 0.2071}
#: ... and SFDA's mean of the per-data-set values, for contrast (issue 21)
CHAVES_PUBLISHED_SFDA_MEAN = 0.2192
#: Chaves et al.'s medical targets
CHAVES_MEDICAL = ("brain_tumor_kaggle", "breakhis", "skin_splits")


def load_chaves2024() -> pd.DataFrame:
    """Chaves et al. (TMLR 2024): 11 targets (3 medical) x 10 ImageNet architectures, 14 scorers
    (``imagenet`` = ImageNet top-1 accuracy), truth = fine-tuned test accuracy. Scenario ``architecture``."""
    truth = pd.read_csv(_path("chaves2024_tmlr", "test_scores.csv"))
    scores = pd.read_csv(_path("chaves2024_tmlr", "transf_scores_by_metric.csv"))
    models = [c for c in truth.columns if c not in ("dataset", "classes")]
    t = truth.melt(id_vars=["dataset"], value_vars=models, var_name="candidate", value_name="truth")
    s = scores.melt(id_vars=["dataset", "transf_metric"], value_vars=models, var_name="candidate",
                    value_name="score")
    df = s.merge(t, on=["dataset", "candidate"], how="left")
    df = df.rename(columns={"dataset": "target", "transf_metric": "metric"})
    df.insert(0, "scenario", "architecture")
    df.insert(0, "benchmark", "chaves2024")
    df["higher_is_better"] = True
    df["medical"] = df["target"].isin(CHAVES_MEDICAL)
    return validate(df)


# ----------------------------------------------------------------------------------------------------
# Model Spider (Zhang et al., NeurIPS 2023)

#: Model Spider's baseline columns -> the names in its README table
MODELSPIDER_LABELS = {"H-Score": "H-Score", "NCE": "NCE", "LEEP": "LEEP", "NLEEP": "N-LEEP", "LogME": "LogME",
                      "PACTranDirichlet": "PACTran", "OTCE": "OTCE", "LFC": "LFC", "GBC": "GBC"}


def load_modelspider() -> pd.DataFrame:
    """Model Spider's single-source zoo: 8 natural-image targets x 10 ImageNet models, 9 baseline scores
    (``assests/baseline_results.csv``), truth = fine-tuned accuracy (``learnware/learnware_info.py``).
    Scenario ``architecture``."""
    truth = pd.read_csv(_path("modelspider", "finetuning_accuracy.csv"))
    scores = pd.read_csv(_path("modelspider", "baseline_results.csv"))
    scores["Dataset"] = scores["Dataset"].astype(str)
    s = scores.melt(id_vars=["Dataset", "Model"], var_name="metric", value_name="score")
    s = s.rename(columns={"Dataset": "target", "Model": "candidate"})
    df = s.merge(truth.rename(columns={"model": "candidate", "accuracy": "truth"}), on=["target", "candidate"],
                 how="left")
    df.insert(0, "scenario", "architecture")
    df.insert(0, "benchmark", "modelspider")
    df["higher_is_better"] = True
    df["medical"] = False
    return validate(df)


def modelspider_published() -> pd.DataFrame:
    """Model Spider's README table of weighted tau (methods x targets, plus ``Mean``)."""
    return pd.read_csv(_path("modelspider", "readme_weighted_tau.csv")).set_index("method")


# ----------------------------------------------------------------------------------------------------
# [D] (Juodelyte et al. 2024): already in the project, through helpers.reference


def load_dovile2024() -> pd.DataFrame:
    """[D]: 11 MedMNIST targets; scenario ``dataset`` (15 sources, the target itself excluded) and
    ``architecture`` (9 ImageNet architectures); the eight published scores, flipped as [D]'s notebooks do
    (:data:`helpers.reference.ARCHITECTURE_FLIPS`); truth = fine-tuned test AUC."""
    parts = []
    for scen in ("dataset", "architecture"):
        truth = ref.load_ground_truth(scen)
        flips = ref.ARCHITECTURE_FLIPS if scen == "architecture" else ()
        for m in ref.METRICS:
            sc = ref.load_scores(m, scen, flip=m in flips)
            sc = sc.reindex(index=truth.index, columns=truth.columns)
            for t in truth.columns:
                for src in truth.index:
                    if canonical_name(src) == canonical_name(t):
                        continue
                    y = truth.at[src, t]
                    if not np.isfinite(y):
                        continue
                    parts.append((scen, t, src, y, m, sc.at[src, t]))
    df = pd.DataFrame(parts, columns=["scenario", "target", "candidate", "truth", "metric", "score"])
    df.insert(0, "benchmark", "dovile2024")
    df["higher_is_better"] = True
    df["medical"] = True
    return validate(df)


# ----------------------------------------------------------------------------------------------------
# Chaves et al., DART 2023 (same group as the TMLR benchmark, separate fine-tuning runs)

CHAVES2023_METRICS = ("hscore_score", "nce_score", "leep_score", "nleep_score", "logme_score",
                      "reg_hscore_score", "gbc_score")


def load_chaves2023() -> pd.DataFrame:
    """Chaves et al. (DART 2023): 3 medical targets x 10 ImageNet architectures, 7 scores; truth = the
    fine-tuned test accuracy (``test_acc_score``). Scenario ``architecture``."""
    perf = pd.read_csv(_path("chaves2023_dart", "task_performances.csv"))
    sc = pd.read_csv(_path("chaves2023_dart", "transf_metrics_values.csv"))
    df = sc.merge(perf[["task", "model", "test_acc_score"]], on=["task", "model"], how="left")
    df = df.rename(columns={"task": "target", "model": "candidate", "value": "score", "test_acc_score": "truth"})
    df.insert(0, "scenario", "architecture")
    df.insert(0, "benchmark", "chaves2023")
    df["higher_is_better"] = True
    df["medical"] = True
    return validate(df)


# ----------------------------------------------------------------------------------------------------
# Schlimme (DirectTransEst, 2023): 3D brain MRI segmentation


def load_schlimme2023() -> pd.DataFrame:
    """DirectTransEst (Schlimme, HPI thesis 2023): 3 segmentation tasks (white matter, hippocampus,
    ventricles) x 4 MRI data sets; each (task, target data set) is a target with the 3 other data sets as
    source models. Scores: the source model's Dice on the target before fine-tuning (``pre_ft_dice``),
    CC-FV ([S]) and TransRate; truth = Dice after fine-tuning. Scenario ``dataset``."""
    raw = pd.read_csv(_path("schlimme2023", "FinalResults.csv"))
    raw["target"] = raw["Task"].str.lower().str.replace(" ", "_") + "/" + raw["Target Data"].str.lower()
    cols = {"Pre-FT Dice": "pre_ft_dice", "Pre-FT CCFV": "ccfv", "Pre-FT TransRate": "transrate"}
    df = raw.melt(id_vars=["target", "Source Data", "Post-Fine-Tuning"], value_vars=list(cols),
                  var_name="metric", value_name="score")
    df["metric"] = df["metric"].map(cols)
    df = df.rename(columns={"Source Data": "candidate", "Post-Fine-Tuning": "truth"})
    df["candidate"] = df["candidate"].str.lower()
    df.insert(0, "scenario", "dataset")
    df.insert(0, "benchmark", "schlimme2023")
    df["higher_is_better"] = True
    df["medical"] = True
    return validate(df)


# ----------------------------------------------------------------------------------------------------
# Godau et al. (task fingerprinting, DKFZ)

#: Godau et al.'s transfer scenarios -> their experiment files (AUROC, full targets, validation tasks)
GODAU_SCENARIOS = {"architecture": "load_arch_experiment_AUROC_False_True.csv",
                   "pretraining": "load_pretrain_experiment_AUROC_True.csv",
                   "augmentation": "load_augmentation_experiment_AUROC_True.csv",
                   "multi_task": "load_multi_task_experiment_AUROC_False_True.csv"}
#: the task distances copied (file stem; ``:`` of the original names replaced by ``_``); lower = closer
GODAU_DISTANCES = ("FID", "KLD-PP_NN", "KLD-PP_NS-1000-BINS", "KLD-PP_NS-W_SN-1000-BINS", "KLD-PP_NS-W_TS-100-BINS",
                   "MMD-geo-sinkhorn-0.01", "SEMANTIC", "VDNA-PP_NN-1000-BINS")


def _godau_runs(scenario: str) -> pd.DataFrame:
    if scenario not in GODAU_SCENARIOS:
        raise BenchmarkError(f"unknown Godau scenario {scenario!r}; known: {list(GODAU_SCENARIOS)}")
    runs = pd.read_csv(_path("godau2024", "exp", GODAU_SCENARIOS[scenario]), index_col=0)
    return runs.rename(columns={"r": "replicate", "s": "candidate", "t": "target", "p": "truth"})


def godau_task_infos() -> pd.DataFrame:
    """Godau et al.'s task table (``cache/task_infos.csv``) indexed by task name, with ``medical``."""
    info = pd.read_csv(_path("godau2024", "task_infos.csv"), index_col=0).set_index("name")
    info["medical"] = info["keywords"].astype(str).str.contains("'medical'")
    return info


def load_godau2024(scenarios=tuple(GODAU_SCENARIOS)) -> pd.DataFrame:
    """Godau et al. (task fingerprinting, IMSY-DKFZ): 43 biomedical and natural targets x 58-70 source
    tasks in four transfer scenarios (architecture search, pre-training, augmentation policy, multi-task),
    truth = target test AUROC averaged over 3 seeds (:func:`load_replicates` has the seeds). Scores: 8 task
    distances (``lower_is_better``) and the source task's number of samples (``source_size``, a static
    baseline)."""
    info = godau_task_infos()
    dists = {d: pd.read_csv(_path("godau2024", "distances", f"{d}.csv"), index_col=0) for d in GODAU_DISTANCES}
    parts = []
    for scen in scenarios:
        runs = _godau_runs(scen)
        truth = runs.groupby(["target", "candidate"], sort=False)["truth"].mean().reset_index()
        for d, D in dists.items():
            st = D.stack().rename("score").rename_axis(["candidate", "target"]).reset_index()
            parts.append(truth.merge(st, on=["target", "candidate"], how="left").assign(
                metric=d, higher_is_better=False, scenario=scen))
        size = truth.assign(score=truth["candidate"].map(info["num_samples"]).astype(float),
                            metric="source_size", higher_is_better=True, scenario=scen)
        parts.append(size)
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "benchmark", "godau2024")
    df["medical"] = df["target"].map(info["medical"]).fillna(False).astype(bool)
    return validate(df)


def godau_replicates(scenarios=tuple(GODAU_SCENARIOS)) -> pd.DataFrame:
    """The 3 seeds of every (scenario, target, source) of :func:`load_godau2024`."""
    parts = [_godau_runs(s).assign(scenario=s) for s in scenarios]
    df = pd.concat(parts, ignore_index=True).assign(benchmark="godau2024")
    return df[["benchmark", "scenario", "target", "candidate", "replicate", "truth"]]


# ----------------------------------------------------------------------------------------------------
# [R] (Juodelyte, Jimenez-Sanchez, Cheplygina, TMLR 2023): ground truth only

#: pre-training images of [R]'s sources (ImageNet-1k train split; RadImageNet as published; random init 0)
R_SOURCE_SIZES = {"ImageNet": 1_281_167, "RadImageNet": 1_350_000, "random": 0}


def load_juodelyte2023() -> pd.DataFrame:
    """[R]: 7 medical targets x 3 starting points (ImageNet, RadImageNet, random initialisation), full
    fine-tuning, truth = test AUC averaged over 5 folds (:func:`load_replicates` has the folds). No
    transferability score was published: the only score is the static ``source_size`` baseline. Scenario
    ``dataset``."""
    auc = pd.read_csv(REFERENCE / "juodelyte2023" / "results" / "AUC.csv")
    auc = auc[auc["freeze"] == "freezeFalse"]
    truth = auc.groupby(["target", "source"], sort=False)["AUC"].mean().reset_index()
    df = truth.rename(columns={"source": "candidate", "AUC": "truth"})
    df["score"] = df["candidate"].map(R_SOURCE_SIZES).astype(float)
    df = df.assign(benchmark="juodelyte2023", scenario="dataset", metric="source_size", higher_is_better=True,
                   medical=True)
    return validate(df)


def juodelyte2023_replicates() -> pd.DataFrame:
    auc = pd.read_csv(REFERENCE / "juodelyte2023" / "results" / "AUC.csv")
    auc = auc[auc["freeze"] == "freezeFalse"]
    return pd.DataFrame({"benchmark": "juodelyte2023", "scenario": "dataset", "target": auc["target"],
                         "candidate": auc["source"], "replicate": auc["fold"], "truth": auc["AUC"]})


# ----------------------------------------------------------------------------------------------------
# stable_transfer (Agostinelli et al., Google Research, ECCV 2022)


def load_stable_transfer() -> pd.DataFrame:
    """stable_transfer's source-architecture table: 9 natural-image targets x 19 Keras ImageNet
    architectures, 5 scores (GBC, LEEP, NLEEP, LogME, H-score); truth = test accuracy after training a head on
    the frozen backbone (scenario ``architecture_frozen``) or after full fine-tuning
    (``architecture_finetuned``)."""
    acc = pd.read_csv(_path("stable_transfer", "test_accuracy.csv"))
    sc = pd.read_csv(_path("stable_transfer", "scores_by_metric.csv"))
    archs = [c for c in acc.columns if c not in ("target", "trainable_backbone")]
    t = acc.melt(id_vars=["target", "trainable_backbone"], value_vars=archs, var_name="candidate",
                 value_name="truth")
    s = sc.melt(id_vars=["target", "metric"], value_vars=archs, var_name="candidate", value_name="score")
    df = s.merge(t, on=["target", "candidate"], how="left")
    df["scenario"] = np.where(df["trainable_backbone"].astype(str) == "True", "architecture_finetuned",
                              "architecture_frozen")
    df = df.drop(columns="trainable_backbone").assign(benchmark="stable_transfer", higher_is_better=True,
                                                      medical=False)
    return validate(df)


def load_stable_transfer_segmentation() -> pd.DataFrame:
    """stable_transfer's source-data-set table (semantic segmentation): 17 targets x the 16 other data sets as
    sources, 5 scores (GBC, LEEP, NLEEP, LogME, H-score), truth = target test mean IoU after fine-tuning the
    source model. Scenario ``dataset_segmentation`` of benchmark ``stable_transfer_seg`` (own name: the
    segmentation models share no candidate with the classification table)."""
    raw = pd.read_csv(_path("stable_transfer", "source_datasets_table.csv"), index_col=0)
    df = raw.rename(columns={"Transferability Metric": "metric", "Source Dataset": "candidate",
                             "Transferability Metric Score": "score", "Test Mean IoU": "truth",
                             "Target Dataset": "target"})
    df = df.assign(benchmark="stable_transfer_seg", scenario="dataset_segmentation", higher_is_better=True,
                   medical=False)
    return validate(df)


# ----------------------------------------------------------------------------------------------------
# model-selection-nlp (Bai et al.): GLUE, 6 pre-trained language models

#: the method files read (one variant per family: 100 % of the data, 768-dim features, first-token pooling;
#: the model-similarity methods against albert-base-v2, the one target model all their files exist for)
NLP_METHODS = ("DSE-l2", "PA", "RSA-cos", "DDS-cos", "kNN-5-corr", "GBC", "HScore", "HScoreR", "MSC-cos", "LFC-cos",
               "TransRate", "NLEEP", "PARC-corr", "Logistic", "LogME", "SFDA", "PACTran-1-10", "EarlyStop-50",
               "EarlyStop-100", "EarlyStop-500")
#: methods whose lower score predicts better (the authors' export notebook negates PACTran)
NLP_LOWER_IS_BETTER = ("PACTran-1-10",)


def load_model_selection_nlp() -> pd.DataFrame:
    """model-selection-nlp: 8 GLUE targets x 6 pre-trained language models (BERT, DistilBERT, RoBERTa,
    cased/uncased), 20 methods (:data:`NLP_METHODS`), each score the mean of the authors' repeats (5 for most
    methods; ``cost`` = mean seconds per repeat); truth = the fine-tuned GLUE dev score the authors correlate
    against (``TUNED_RESULTS`` of their export notebook: Matthews correlation for CoLA, accuracy otherwise).
    Text, not images: the Evidence chapter keeps it out of the pooled image views. Scenario
    ``language_model``."""
    truth = pd.read_csv(_path("model_selection_nlp", "finetuned_glue.csv"))
    sc = pd.read_csv(_path("model_selection_nlp", "scores_768_first.csv"))
    sc["metric"] = sc["method"].str.replace("-albert-base-v2", "", regex=False)
    unknown = sorted(set(sc["metric"]) - set(NLP_METHODS))
    if unknown:
        raise BenchmarkError(f"model_selection_nlp: unexpected method(s) {unknown} in scores_768_first.csv")
    mean = (sc.groupby(["target", "metric", "model"], sort=False)
              .agg(score=("score", "mean"), cost=("seconds", "mean")).reset_index())
    df = mean.merge(truth.rename(columns={"finetuned_score": "truth"}), on=["target", "model"], how="left")
    df = df.rename(columns={"model": "candidate"})
    df = df.assign(benchmark="model_selection_nlp", scenario="language_model",
                   higher_is_better=~df["metric"].isin(NLP_LOWER_IS_BETTER), medical=False)
    return validate(df)


# ----------------------------------------------------------------------------------------------------
# ground truth only: SFDA, EMMS, TransferGraph, PARC


def sfda_published() -> pd.DataFrame:
    """SFDA's README table of weighted tau on its supervised-CNN zoo (methods x 11 targets), as printed."""
    return pd.read_csv(_path("sfda", "readme_weighted_tau.csv")).set_index("method").astype(float)


#: SFDA's README target names -> the names of its fine-tuning table
SFDA_README_TARGETS = {"Aircraft": "aircraft", "Caltech101": "caltech101", "Cars": "cars", "CIFAR10": "cifar10",
                       "CIFAR100": "cifar100", "DTD": "dtd", "Flowers": "flowers", "Food": "food", "Pets": "pets",
                       "SUN397": "sun397", "VOC2007": "voc2007"}


def load_sfda() -> pd.DataFrame:
    """SFDA (Shao et al., ECCV 2022): 11 natural-image targets x 11 supervised ImageNet CNNs (scenario
    ``supervised_cnn``, torchvision names) and x 12 self-supervised ResNet-50s (``self_supervised``), truth =
    fine-tuned test accuracy after a hyper-parameter sweep. Ground truth only: the README publishes weighted
    tau per target (:func:`sfda_published`), not the scores; the table carries the LOTO prior."""
    acc = pd.read_csv(_path("sfda", "finetune_accuracy.csv"))
    parts = [loto_prior_table(g.rename(columns={"model": "candidate", "accuracy": "truth"})
                              .drop(columns="group").assign(medical=False), "sfda", scen)
             for scen, g in acc.groupby("group", sort=False)]
    return validate(pd.concat(parts, ignore_index=True))


def load_emms() -> pd.DataFrame:
    """EMMS (Meng et al., NeurIPS 2023): fine-tuned results of three zoos: 11 targets x 11 supervised CNNs
    (``supervised_cnn``, SFDA's table again), 11 targets x 13 vision transformers (``vit``: DeiT, DINO, MoCo
    v3, PVT, PVTv2, Swin) and 5 image-captioning targets x 9 encoder-decoder pairs (``captioning``, truth =
    the caption score the authors correlate against). Ground truth only; the table carries the LOTO prior."""
    res = pd.read_csv(_path("emms", "finetune_results.csv"))
    parts = [loto_prior_table(g.rename(columns={"model": "candidate", "finetuned_score": "truth"})
                              .drop(columns="scenario").assign(medical=False), "emms", scen)
             for scen, g in res.groupby("scenario", sort=False)]
    return validate(pd.concat(parts, ignore_index=True))


#: TransferGraph's medical target (VTAB's diabetic retinopathy grading)
TRANSFERGRAPH_MEDICAL = ("diabetic_retinopathy_detection",)


def load_transferability_graph() -> pd.DataFrame:
    """TransferGraph (Li et al.): 13 targets (VTAB, Stanford Cars, Food-101; one medical) x up to 180
    Hugging Face image-classification models (``doc/records.csv``: one fine-tuning run per pair, 30 epochs),
    truth = test accuracy. Ground truth only; scores: the LOTO prior and the model's parameter count
    (``num_params``, ``doc/model_config_dataset.csv``; NaN where not stated). Scenario ``hub_models``."""
    rec = pd.read_csv(_path("transferability_graph", "records.csv"), index_col=0)
    meta = pd.read_csv(_path("transferability_graph", "model_config_dataset.csv")).set_index("model")
    truth = rec.rename(columns={"model": "candidate", "finetuned_dataset": "target", "test_accuracy": "truth"})
    truth = truth[["target", "candidate", "truth"]].assign(medical=lambda d: d["target"].isin(TRANSFERGRAPH_MEDICAL))
    df = loto_prior_table(truth, "transferability_graph", "hub_models")
    pairs = df.drop_duplicates(["target", "candidate"])
    size = pairs.assign(metric="num_params", higher_is_better=True,
                        score=pairs["candidate"].map(meta["number_of_parameters"]).astype(float))
    return validate(pd.concat([df, size], ignore_index=True))


def load_parc() -> pd.DataFrame:
    """PARC's benchmark (Bolya et al., NeurIPS 2021): 7 natural-image targets x 67 models (5 architectures
    pre-trained on 46 source data sets or tasks: the controlled set plus crowd-sourced detectron2 and
    self-supervised checkpoints; candidate = ``architecture/source``), truth = the oracle fine-tuned accuracy
    (``oracles/all.csv``). Ground truth only; the table carries the LOTO prior. Scenario ``model_bank``."""
    raw = pd.read_csv(_path("parc", "oracles_all.csv"))
    truth = pd.DataFrame({"target": raw["Target Dataset"],
                          "candidate": raw["Architecture"] + "/" + raw["Source Dataset"],
                          "truth": raw["Oracle"], "medical": False})
    return loto_prior_table(truth, "parc", "model_bank")


# ----------------------------------------------------------------------------------------------------
# registry

#: SFDA and EMMS share their first author's group and senior author: one research group when pooling
SHAO_LUO = "HKU, Tencent ARC, Shanghai AI Lab / Shao & Luo"

#: name -> (loader, one line: what it holds, independent group, medical targets?)
BENCHMARKS: dict[str, tuple[Callable[[], pd.DataFrame], str, str, str]] = {
    "dovile2024": (load_dovile2024, "[D] Juodelyte et al. 2024: MedMNIST, 15 source data sets and 9 architectures",
                   "ITU Copenhagen / Cheplygina", "medical"),
    "chaves2024": (load_chaves2024, "Chaves et al. TMLR 2024: 11 targets x 10 ImageNet architectures, 14 scorers",
                   "UNICAMP / Avila & Valle", "mixed"),
    "modelspider": (load_modelspider, "Model Spider (Zhang et al. NeurIPS 2023): 8 targets x 10 ImageNet models",
                    "Nanjing University / Zhan & Ye", "natural"),
    "chaves2023": (load_chaves2023, "Chaves et al. DART 2023: 3 medical targets x 10 ImageNet architectures, 7 scores",
                   "UNICAMP / Avila & Valle", "medical"),
    "schlimme2023": (load_schlimme2023, "DirectTransEst: 3D brain MRI segmentation, 12 targets x 3 source models",
                     "HPI Potsdam / Lippert", "medical"),
    "godau2024": (load_godau2024, "Godau et al. task fingerprinting: 43 targets x 58-70 source tasks, 4 scenarios",
                  "DKFZ / Maier-Hein", "mixed"),
    "juodelyte2023": (load_juodelyte2023, "[R] Juodelyte et al. TMLR 2023: 7 targets, ImageNet vs RadImageNet vs "
                      "random init (ground truth only)", "ITU Copenhagen / Cheplygina", "medical"),
    "stable_transfer": (load_stable_transfer, "stable_transfer (Agostinelli et al. ECCV 2022): 9 targets x 19 "
                        "ImageNet architectures, frozen and fine-tuned", "Google Research / Ferrari", "natural"),
    "stable_transfer_seg": (load_stable_transfer_segmentation, "stable_transfer: semantic segmentation, 17 targets "
                            "x 16 source data sets, 5 scores", "Google Research / Ferrari", "natural"),
    "sfda": (load_sfda, "SFDA (Shao et al. ECCV 2022): 11 targets x 11 supervised CNNs and 12 self-supervised "
             "ResNet-50s (ground truth only)", SHAO_LUO, "natural"),
    "emms": (load_emms, "EMMS (Meng et al. NeurIPS 2023): 11 targets x 13 ViTs, 5 captioning targets x 9 models, "
             "SFDA's CNN table (ground truth only)", SHAO_LUO, "natural"),
    "transferability_graph": (load_transferability_graph, "TransferGraph (Li et al.): 13 targets x up to 180 "
                              "Hugging Face models (ground truth only)", "TU Delft / Hai", "mixed"),
    "parc": (load_parc, "PARC (Bolya et al. NeurIPS 2021): 7 targets x 67 models from 46 sources (ground truth "
             "only)", "Georgia Tech / Hoffman", "natural"),
    "model_selection_nlp": (load_model_selection_nlp, "model-selection-nlp: 8 GLUE targets x 6 language models, "
                            "20 methods (text)", "Bai et al. (model-selection-nlp)", "text"),
}


def load(name: str) -> pd.DataFrame:
    """The tidy table of one benchmark of :data:`BENCHMARKS`."""
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name][0]()


def load_all(names=None) -> pd.DataFrame:
    """All (or the named) benchmarks in one tidy table."""
    return pd.concat([load(n) for n in (names or BENCHMARKS)], ignore_index=True)


def load_replicates(name: str) -> pd.DataFrame | None:
    """The replicate table (repeated fine-tuning runs) of a benchmark, or None where none was published."""
    fn = REPLICATES.get(name)
    return validate_replicates(fn()) if fn else None


REPLICATES: dict[str, Callable[[], pd.DataFrame]] = {"godau2024": godau_replicates,
                                                     "juodelyte2023": juodelyte2023_replicates}

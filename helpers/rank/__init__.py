"""Choose a model for your data: rank candidate pre-trained models on your own labelled images.

    python -m helpers.rank --target my_images/ --candidates breastmnist,resnet18:random,resnet50 --out ranking.csv

.. code-block:: python

    from helpers.rank import rank_models
    result = rank_models("my_images/", ["breastmnist", "resnet18:random", "resnet18:colleague.pt@64"],
                         cache_dir="rank_cache")
    result.recommendation          # best first: mean rank, P(ranked first), rank interval
    result.table                   # one row per (candidate, metric)

What it does, per candidate (:mod:`helpers.rank.candidates` says what a candidate string can be, and
:mod:`helpers.rank.targets` what a target can be):

1. the target images are resized and normalised on the device for the candidate's own input convention;
2. penultimate features and source-head logits are extracted once in float32 (:func:`helpers.models.extract`)
   and cached with FU as ``.npy`` under a hash of (weights, target images, input convention)
   (:class:`helpers.scoring.FeatureCache`), so a re-run only recomputes the metrics;
3. every applicable metric of :mod:`helpers.metrics` is computed by the scoring kernel the scoring stage uses
   (:func:`helpers.scoring.score_model`): the pairwise ones (on a multi-label target
   only those that support it: ``logme``, ``parc``, ``knn_accuracy``, ``linear_probe``), FU from the model,
   the set-level ones across the candidates (``ncti``, ``etran``, [D]'s ``lp_fu``), the supervised
   baselines (``knn_accuracy``, ``linear_probe``) and the target-agnostic ones (``num_params``,
   ``imagenet_top1``);
4. each metric ranks the candidates (1 = best, in the metric's own direction, ``REGISTRY[m].higher_is_better``).

The **recommendation** is the mean rank over :data:`DEFAULT_RECOMMEND` (or the metrics given as ``recommend=``),
a mean of ranks needing no common scale between metrics. The default is derived from the public benchmarks,
medical classification first, by :func:`helpers.rank.default.derive_rank_default` under a stated rule
(best metric evaluated on medical targets by at least two independent groups, with every such metric that the
evidence cannot tell from it; metrics without public evidence, such as k-NN accuracy and the linear probe, are
left out), and is recorded with the evidence it rests on in :mod:`helpers.rank.evidence`; every ranking
records that stamp in ``settings["recommend_basis"]`` (or "user's choice"). Its stability comes from a
bootstrap over the target images (``n_boot`` replicates, default 100): each replicate resamples the images with
replacement within each class, recomputes the recommendation's metrics on them for every candidate (the same
images for all; see :func:`helpers.rank.ranking._recommend` for how each metric is recomputed: LogME and the
other feature metrics on the resampled features, while the k-NN, probe and LP terms are per image, so for them a
replicate costs microseconds) and re-ranks, ties broken at random.
Per candidate the table reports ``p_first`` (the share of replicates that rank it first) and a 95 % rank
interval (``rank_low`` .. ``rank_high``); the recommendation's metrics get 95 % score intervals
(``ci_low`` / ``ci_high``). The interval covers which images were scored, not the variability of fine-tuning.

Bad input raises a ``ValueError`` subclass naming the file or value (:class:`TargetError`,
:class:`CandidateError`, :class:`MetricError`; the command prints it and exits with status 2); a candidate
that cannot be had here becomes ``unavailable`` (weights offline, file missing, timm not installed) or
``error`` (a corrupt file, a checkpoint that does not fit its architecture, a model that fails on the input)
rows with the reason, and the others are ranked.
"""
from .candidates import Candidate, CandidateError, parse_candidate, parse_candidates, preprocessing
from .evidence import EVIDENCE
from .ranking import (AGNOSTIC, COLUMNS, DEFAULT_RECOMMEND, RECOMMENDATION, MetricError, RankResult,
                      bootstrap_ranks, default_metrics, mean_rank, profile_candidates, rank_models, ranking_tables,
                      resolve_metrics)
from .targets import (RankInputError, Target, TargetError, TargetImages, decode_images, load_target,
                      write_busi_folder, write_image_folder)

__all__ = [
    "rank_models", "RankResult", "load_target", "write_image_folder", "write_busi_folder", "Target", "TargetImages", "decode_images", "parse_candidate",
    "parse_candidates", "Candidate", "preprocessing", "default_metrics", "resolve_metrics", "mean_rank",
    "bootstrap_ranks", "profile_candidates", "ranking_tables", "RankInputError", "TargetError", "CandidateError", "MetricError", "DEFAULT_RECOMMEND",
    "EVIDENCE",
    "AGNOSTIC", "COLUMNS", "RECOMMENDATION",
]

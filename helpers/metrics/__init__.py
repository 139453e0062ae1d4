"""Transferability metrics (pairwise and set-level), in torch, on the inputs' device.

Pairwise (one source, one target; ``labels`` are (N,) integers 0..C-1, or (N, L) multi-hot where supported):

============================  ==========  =====================================================
function                      inputs      notes
============================  ==========  =====================================================
``logme(features, labels)``   features    fixed-point LogME, float64; multi-label (regression)
``leep(logits, labels)``      logits      source-head logits
``nleep(features, labels)``   features    PCA 80 % + GMM 5C, mean p(y|x) (``log=True`` variant)
``sfda(features, labels)``    features    PCA-64 first (``remedy``); ``remedy=None`` / ``sfda_reference``: the
                                          reference arithmetic, which saturates at 1.0 when N is small vs D
``parc(features, labels)``    features    x100; multi-label; subset above 5000; reference arithmetic ``backend="numpy"``
``ncti_parts(...)``           features    NamedTuple (seli, ncc, vc); combine with ``ncti``
``lp(features, labels)``      features    NCA 50 + 5-NN on the same set; NCA on 3000, 5-NN on 10k queries above
``h_score``, ``regularized_h_score``, ``gbc``, ``transrate``, ``etran_parts``   features
``nce(logits, labels)``       logits
``knn_accuracy``, ``linear_probe``  features    baselines; multi-label; kNN on 10k stratified queries above 10k
``fu(model, first, second, images, labels)``  model   gradient-norm ratio under a triplet loss
============================  ==========  =====================================================

Segmentation (CC-FV, [S]; pixel features of decoder layers, see :mod:`helpers.metrics.ccfv`):

==============================================  ===============  ==============================================
function                                        inputs           notes
==============================================  ===============  ==============================================
``sample_pixels(masks)`` / ``gather_pixels``    masks, features  same pixels for every model; proportional
``ccfv_parts(features, labels, cases, ...)``    pixel features   NamedTuple (cc, fv), both lower = better
``ccfv(parts_by_layer)``                        ccfv_parts       -sum over layers of log(fv * cc); higher = better
``gaussian_w2``, ``gaussian_kl``, ...           Gaussians        batched, float64; W2 / KL / Bhattacharyya
==============================================  ===============  ==============================================

Set-level (dict source -> parts/values, returns dict source -> float): ``ncti``, ``etran``, ``lp_fu``.
``REGISTRY`` / ``list_metrics()`` / ``score(name, **inputs)`` describe and dispatch all of them.
All scores are "higher = better" (see each docstring; ``REGISTRY[name].higher_is_better``).

The functions here carry no thread policy: the scoring kernel (:func:`helpers.scoring.score_model`,
:func:`helpers.scoring.call_metric`) and :func:`score` run them under :func:`helpers.threads.fair_threads`.
"""
from .ccfv import (CCFVParts, PixelSample, SampleRows, ccfv, ccfv_parts, class_consistency, feature_variety,
                   gather_pixels, gaussian_bhattacharyya, gaussian_kl, gaussian_w2, sample_pixels, sample_rows,
                   unit_rows)
from .fu import cudnn_settings, fu, fu_batches, resolve_layer
from .gmm import nleep
from .neighbours import knn_accuracy, lp, parc
from .pairwise import (ETranParts, NCTIParts, etran_parts, gbc, h_score, leep, logme, ncti_parts, nce,
                       regularized_h_score, SFDA_DEFAULT_REMEDY, SFDA_REMEDIES, sfda, sfda_reference,
                       transrate)
from .probe import linear_probe
from .registry import REGISTRY, MetricInfo, list_metrics, score
from .setlevel import etran, lp_fu, ncti

__all__ = [
    "logme", "leep", "nleep", "sfda", "sfda_reference", "SFDA_REMEDIES", "SFDA_DEFAULT_REMEDY", "parc", "ncti_parts", "NCTIParts", "lp", "h_score", "regularized_h_score",
    "nce", "gbc", "transrate", "etran_parts", "ETranParts", "knn_accuracy", "linear_probe", "fu", "fu_batches",
    "resolve_layer", "cudnn_settings", "ncti", "etran", "lp_fu", "REGISTRY", "MetricInfo", "list_metrics",
    "score", "sample_pixels", "gather_pixels", "sample_rows", "PixelSample", "SampleRows", "gaussian_w2",
    "gaussian_kl", "gaussian_bhattacharyya", "class_consistency", "feature_variety", "ccfv_parts", "CCFVParts",
    "ccfv", "unit_rows",
]

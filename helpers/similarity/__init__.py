"""Similarity of hidden representations ([R], PROTOCOL.md section 8): CCA, SVCCA, PWCCA, linear CKA, the
sampling of layer activations as [R] did it, prediction similarity and (this project's extension) weight change.

Measures of two activation matrices
-----------------------------------
Every measure takes ``x`` of shape (points, neurons_x) and ``y`` of shape (points, neurons_y): the same points
(images, or spatial positions of images) in two networks. NumPy arrays and torch tensors are both accepted;
the computation runs in float64 on the inputs' device (CUDA when a tensor is on CUDA; a NumPy partner is moved
there) and the result is a Python float. All are 1 for identical inputs and lie in [0, 1] (higher = more
similar).

====================================  ============================================================  ==================
function                              what                                                          invariant to
====================================  ============================================================  ==================
``cca(x, y, epsilon=1e-12)``          mean canonical correlation, google/svcca ``cca_core``         invertible linear
``cca_coefficients(x, y, ...)``       the canonical correlations themselves (descending)
``svcca(x, y, keep=0.99)``            SVD to 99 % of the variance per side, then ``cca``             invertible linear
``pwcca(x, y, epsilon=1e-12)``        projection-weighted CCA (google/svcca ``pwcca``)
``linear_cka(x, y, debiased=False)``  linear CKA (Kornblith et al. 2019); debiased HSIC (Song 2007)  orthogonal, scale
``MinibatchCKA`` / ``linear_cka_minibatch``  the same CKA from sufficient statistics over batches
====================================  ============================================================  ==================

Conventions shared by all of them (bad input is a ``ValueError`` that names the problem):

* 2-D inputs only (a single neuron is ``x[:, None]``), the same number of points on both sides, no NaN or
  Inf, at least one point and one neuron.
* float16 / bfloat16 (and integer or bool) inputs are up-cast to float64 before anything else: the result is
  finite, and as precise as the inputs (three significant digits for float16).
* CCA, SVCCA and PWCCA need more points than neurons on each side (``points > neurons``, as google/svcca
  asserts): with n <= d points the canonical correlations are 1 whatever the data, so a value there would mean
  nothing. Between d and about 10 d points CCA is strongly inflated (for independent Gaussian data the mean
  *squared* canonical correlation is d / (n - 1), Pillai's trace under independence, so the mean correlation
  is of order sqrt(d / n)); report n and d with every value.
* A constant neuron: CCA (and SVCCA, PWCCA) drops neurons whose variance, relative to the largest entry of
  their side's covariance, is below ``epsilon`` (google/svcca's rule), so the number of canonical correlations
  is min(kept_x, kept_y); :func:`cca_coefficients` shows how many. CKA needs nothing special: a constant
  neuron is zero after centring and contributes nothing. If every neuron of a side is constant, every
  measure raises.

CCA semantics (google/svcca ``cca_core.get_cca_similarity(x.T, y.T, epsilon)``): covariances with ``n - 1``,
each block divided by the largest absolute entry of its own covariance (the cross block by the geometric mean
of the two), neurons with a rescaled variance below ``epsilon`` dropped, ``epsilon * I`` added, inverse square
roots, canonical correlations = singular values of ``Sxx^-1/2 Sxy Syy^-1/2``. The summary is the mean of *all*
of them (what [R] reported; not the ``threshold=0.98`` truncated ``mean`` of the dictionary). The inverse
square root uses one symmetric eigendecomposition with the pseudo-inverse rule (eigenvalues below 1e-15 times
the largest count as zero); google/svcca takes ``pinv`` and then a square root, which is the same matrix
except where rounding makes an eigenvalue negative, where it returns NaN and this code treats the direction
as empty.

Sampling as [R] did it
----------------------
:func:`layer_activations` registers forward hooks on named modules (for torchvision ResNets
:data:`RESNET_LAYERS`: the stem ``relu`` and the four residual stages) and returns, per (layer, repeat), the
activations of ``round(points / (h * w))`` images at every spatial position (one point per position) for
``n_channels`` random channels. :func:`sampling_plan` draws the images and channels from a seed and the layer
shapes only, so two networks of the same architecture get the same draws; :func:`compare_models` runs both
and returns a tidy table.

Predictions and weights
-----------------------
:func:`prediction_similarity`: error agreement of two classifiers with the correct independent-errors baseline,
[R]'s defective baseline and Cohen's kappa. :func:`weight_change` / :func:`weight_change_by_stage`: relative
L2 change and cosine between pre-trained and fine-tuned conv/linear weights, this project's extension ([R] has
no weight-space measure).

Modules: :mod:`~helpers.similarity.measures` (the measures), :mod:`~helpers.similarity.sampling` ([R]'s
sampling and :func:`compare_models`), :mod:`~helpers.similarity.predictions` and
:mod:`~helpers.similarity.weights`; every public name is re-exported here, so ``from helpers.similarity import
X`` holds for all of them.
"""
from __future__ import annotations

from helpers.similarity.measures import (
    MEASURES,
    MinibatchCKA,
    cca,
    cca_coefficients,
    linear_cka,
    linear_cka_minibatch,
    pwcca,
    svcca,
    svd_reduce,
)
from helpers.similarity.predictions import prediction_similarity
from helpers.similarity.sampling import (
    R_STAGE_OF_LAYER,
    RESNET_LAYERS,
    LayerSample,
    compare_models,
    layer_activations,
    layer_shapes,
    sampling_plan,
)
from helpers.similarity.weights import weight_change, weight_change_by_stage

__all__ = [
    "cca", "cca_coefficients", "svcca", "svd_reduce", "pwcca", "linear_cka", "MinibatchCKA",
    "linear_cka_minibatch", "MEASURES", "RESNET_LAYERS", "R_STAGE_OF_LAYER", "LayerSample", "layer_shapes",
    "sampling_plan", "layer_activations", "compare_models", "prediction_similarity", "weight_change",
    "weight_change_by_stage",
]

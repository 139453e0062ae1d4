"""helpers: the code behind the transferability-estimation book.

The modules form layers; a module imports from its own layer and the layers below it (``benchmarks/layers.py``
counts what crosses them, and every upward import says why in a ``# layer:`` comment).

0 foundation (imported by everything)
  paths       where data, fixtures and results live (DATA_ROOT rules)
  names, booktext   source and target names; the book's wording
  threads     behaviour on a CPU shared with other busy processes (``HELPERS_THREADS=off`` turns it off), and
              the thread count a task's results depend on
  compat      old names of moved objects, forwarded with a DeprecationWarning (one table, ``MOVED``)

1 library (what the book computes)
  data        MedMNIST loading, MD5 checks, the paper's folds, GPU tensor datasets
  transforms  the augmentations ([D]'s, [R]'s affine) on tensors
  profiles    the quick / paper run profiles, validated once (pydantic); each setting decided in one place
  runner      resumable, config-hashed units of work; atomic writes
  models      the model zoo, safe checkpoints, feature extraction
  sources     source kinds in one registry: how each is built, where its weights come from, which metrics apply
  trainer     the training engine: MedMNIST AUC, union label space, safe state, the grouped training loop, recipes
  metrics     transferability metrics (pairwise and set-level) and their registry
  scoring     the scoring kernel (one model's features on one target, every applicable metric, failures as rows),
              the feature cache, set-level combination, score tables
  evaluation  correlation of scores with fine-tuned ground truth (on evaluation_core); evaluation_trust: which
              metric to trust; ground_truth: its selection rules and noise; reliability: split-half, one seed
  similarity  CCA, SVCCA, PWCCA, linear CKA (minibatch too), [R]'s layer sampling, prediction and weight change
  representations  [R]'s analyses: fine-tuning, similarity per stage and its null, predictions, weights
  segmentation     the segmentation bank's data, U-Net, Dice, training and CC-FV
  reference   [D]'s published tables; reference_r: [R]'s
  benchmarks  every public transferability benchmark in one tidy form, correlation conventions
  viz         the chapters' figures

2 stages      one module per stage (pretraining, finetuning, scoring, segmentation, representations): units,
              dependencies, resources, tables; the registry (``helpers.stages.REGISTRY``)
3 engines     run the stages' tasks: local (in process) or ray (a cluster)
4 orchestration   run stages on an engine, plan them (``helpers.orchestration.run``, ``plan``)
5 applications    ``python -m helpers.run`` (run), the book builder (book) and its browser check, ranking your own
              models (rank; its default recommendation derived from the public benchmarks in rank.default), and
              the deprecated ``helpers.training`` and ``helpers.engine``
"""

from . import threads as _threads

# before anything imports torch: its OpenMP runtime reads OMP_WAIT_POLICY once, when it is loaded
_threads.configure()

__version__ = "0.1.0"

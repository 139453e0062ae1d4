"""helpers: the code behind the transferability-estimation book.

Submodules
----------
paths       where data, fixtures and results live (DATA_ROOT rules)
data        MedMNIST loading, MD5 checks, the paper's folds, GPU tensor datasets
profiles    the quick / paper run profiles
runner      resumable, config-hashed units of work
models      the model zoo, safe checkpoints, feature extraction
trainer     the training engine: MedMNIST AUC, union label space, safe state, the grouped training loop, recipes
stages      one module per stage (pretraining, finetuning, scoring, segmentation): units, dependencies, tables
engines     run the stages' tasks: local (in process) or ray (a cluster); ``python -m helpers.run``
metrics     transferability metrics (pairwise and set-level)
evaluation  correlation of scores with fine-tuned ground truth
similarity  CCA, SVCCA, PWCCA, linear CKA (minibatch too), [R]'s layer sampling, prediction and weight change
representations  [R]'s analyses as a resumable stage: fine-tuning, similarity per stage, predictions, weights
reference   [D]'s published tables; reference_r: [R]'s
threads     behaviour on a CPU shared with other busy processes (``HELPERS_THREADS=off`` turns it off)
"""

from . import threads as _threads

# before anything imports torch: its OpenMP runtime reads OMP_WAIT_POLICY once, when it is loaded
_threads.configure()

__version__ = "0.1.0"

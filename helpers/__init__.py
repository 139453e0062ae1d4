"""helpers: the code behind the transferability-estimation book.

Submodules
----------
paths       where data, fixtures and results live (DATA_ROOT rules)
data        MedMNIST loading, MD5 checks, the paper's folds, GPU tensor datasets
profiles    the quick / paper run profiles
runner      resumable, config-hashed units of work
metrics     transferability metrics (pairwise and set-level)
evaluation  correlation of scores with fine-tuned ground truth
similarity  CCA, SVCCA, PWCCA, linear CKA (minibatch too), [R]'s layer sampling, prediction and weight change
representations  [R]'s analyses as a resumable stage: fine-tuning, similarity per stage, predictions, weights
reference   [D]'s published tables; reference_r: [R]'s
"""

__version__ = "0.1.0"

"""helpers: the code behind the transferability-estimation book.

Submodules
----------
paths       where data, fixtures and results live (DATA_ROOT rules)
data        MedMNIST loading, MD5 checks, the paper's folds, GPU tensor datasets
profiles    the quick / paper run profiles
runner      resumable, config-hashed units of work
metrics     transferability metrics (pairwise and set-level)
evaluation  correlation of scores with fine-tuned ground truth
threads     behaviour on a CPU shared with other busy processes (``HELPERS_THREADS=off`` turns it off)
"""

from . import threads as _threads

# before anything imports torch: its OpenMP runtime reads OMP_WAIT_POLICY once, when it is loaded
_threads.configure()

__version__ = "0.1.0"

"""Smoke test of an installed ``helpers`` (run by .ci/install_smoke.sh in a fresh venv, outside the source tree).

Checks that the package's declared dependencies are enough for the documented API: every submodule imports,
a MedMNIST flag loads from the data root, a metric is computed on features of a small random ResNet-18, and
FU (pytorch-metric-learning) runs. Prints one line per check with its time; exits non-zero on the first failure.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

start = time.perf_counter()


def done(what: str) -> None:
    print(f"[smoke] {what} ({time.perf_counter() - start:.1f} s)", flush=True)


import helpers  # noqa: E402

where = Path(helpers.__file__).resolve()
if "site-packages" not in where.parts:
    sys.exit(f"[smoke] helpers was imported from {where}, not from the installed wheel")
for mod in pkgutil.walk_packages(helpers.__path__, "helpers."):
    importlib.import_module(mod.name)  # module-level imports of every submodule are declared dependencies
done(f"helpers {helpers.__version__} from {where.parent}: every submodule imports")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from helpers import metrics  # noqa: E402
from helpers.data import TensorImageDataset, load_medmnist  # noqa: E402
from helpers.models import build_model, extract, fu_layers, penultimate_model  # noqa: E402

flag = os.environ.get("SMOKE_FLAG", "breastmnist")
data = load_medmnist(flag, size=28, download=False)
done(f"load_medmnist({flag!r}) from {os.environ.get('DATA_ROOT', 'data/')}: "
     f"{', '.join(f'{s} {len(v)}' for s, v in data.labels.items())}")

rows = np.arange(min(120, len(data.labels["train"])))
ds = TensorImageDataset.from_medmnist(data, "train", image_size=28, indices=rows, device="cpu")
torch.manual_seed(0)
model = build_model("resnet18", num_outputs=data.n_classes, source="random")
features, logits, labels = extract(model, ds, batch_size=64)
score = metrics.logme(features, labels)
if not np.isfinite(score):
    sys.exit(f"[smoke] logme is not finite: {score}")
done(f"logme on random ResNet-18 features {tuple(features.shape)}: {score:.4f}")

net = penultimate_model(model)
first, second = fu_layers(net, "resnet18")
images, _ = ds.batch(torch.arange(len(ds)))
value = metrics.fu(net, first, second, images, labels)
if not (np.isfinite(value) and value > 0):
    sys.exit(f"[smoke] fu is not a positive finite number: {value}")
done(f"fu on {len(images)} images: {value:.4f}")

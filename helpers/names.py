"""Dataset naming rule shared by the set-level scores and the correlation analysis.

``canonical_name``: lower case, every character other than a letter or digit removed, then a trailing ``mnist``
removed. So ``bloodmnist``, ``BloodMNIST`` and ``blood`` (the name in [D]'s sweep file names) are one dataset,
and a source whose canonical name equals the target's is "the source equal to the target": not a candidate
for that target ([D] sets it to NaN before normalising and before correlating).
"""
from __future__ import annotations

import re

__all__ = ["canonical_name", "is_self"]


def canonical_name(name) -> str:
    """Key that identifies a dataset across naming styles: ``"BloodMNIST"``, ``"blood"`` -> ``"blood"``."""
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    return key[: -len("mnist")] if key.endswith("mnist") and len(key) > len("mnist") else key


def is_self(source, target) -> bool:
    """True when ``source`` is the target's own data set under :func:`canonical_name` (``target=None``: never)."""
    return target is not None and canonical_name(source) == canonical_name(target)

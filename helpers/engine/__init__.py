"""Deprecated name of :mod:`helpers.trainer` (the training engine), kept for code written against it.

``helpers.engine`` and ``helpers.trainer`` differed from the task engines, :mod:`helpers.engines`, by one letter;
the training engine is now :mod:`helpers.trainer`. ``import helpers.engine`` (and its submodules ``auc``,
``union``, ``state``, ``loop``, ``recipes``) gives the same objects, with a :class:`DeprecationWarning`.
"""
import sys
import warnings

from .. import trainer as _trainer
from ..trainer import *  # noqa: F401,F403
from ..trainer import __all__  # noqa: F401
from ..trainer import auc, loop, recipes, state, union

warnings.warn("helpers.engine is now helpers.trainer; the old name will be removed", DeprecationWarning,
              stacklevel=2)
for _name, _module in {"auc": auc, "loop": loop, "recipes": recipes, "state": state, "union": union}.items():
    sys.modules[f"{__name__}.{_name}"] = _module
del _trainer

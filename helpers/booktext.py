"""The book's text around its numbers: computed values for the chapters' Markdown, and tables without a bare
integer index.

A chapter computes a number in a (hidden) code cell and its prose says it in a Markdown cell::

    booktext.glue(n_targets=len(targets), best=summary.index[0], best_tau=summary["mean"].iloc[0])

    # %% [markdown]
    # **Table 3.** Mean weighted τ over the {glue:text}`n_targets` targets; the best is **{glue:text}`best`**
    # ({glue:text}`best_tau:.2f`).

``{glue:text}`name``` (MyST-NB) puts the value into the built page; a format spec after a colon formats numbers.
Opened in Jupyter, the Markdown shows the role itself, and the values are in the notebook's outputs.
"""
from __future__ import annotations

import pandas as pd


def glue(**values) -> None:
    """Make ``values`` available to the chapter's Markdown as **{glue:text}`name`**` without displaying them.

    Needs ``myst_nb`` (installed with jupyter-book); without it (the library installed alone) this does nothing,
    so a chapter still runs."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - the book's environment has it
        return
    for name, value in values.items():
        if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
            value = value.item()  # numpy scalars: glue their Python value, so format specs apply
        _glue(name, value, display=False)


def table(df: pd.DataFrame, digits: int | None = 3, index: bool | None = None):
    """``df`` for display: numbers rounded to ``digits`` and the index hidden when it is a plain 0..n-1
    (``index=None``), or as ``index`` says. Returns a pandas Styler."""
    if index is None:
        index = not (isinstance(df.index, pd.RangeIndex) and df.index.name is None)
    styler = df.style
    if digits is not None:
        numeric = df.select_dtypes("number").columns
        floats = [c for c in numeric if pd.api.types.is_float_dtype(df[c])]
        styler = styler.format("{:.%df}" % digits, subset=floats, na_rep="NaN")
    if not index:
        styler = styler.hide(axis="index")
    return styler

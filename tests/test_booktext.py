"""The book's text helpers: tables without a bare integer index, values glued for the Markdown."""
import numpy as np
import pandas as pd

from helpers import booktext


def test_table_hides_a_bare_integer_index_and_keeps_a_named_one():
    df = pd.DataFrame({"metric": ["logme", "leep"], "tau": [0.123456, np.nan], "n": [3, 4]})
    html = booktext.table(df).to_html()
    assert "0.123" in html and "0.123456" not in html and "NaN" in html
    assert 'class="row_heading' not in html  # no 0, 1 row labels
    named = booktext.table(df.set_index("metric")).to_html()
    assert 'class="row_heading' in named and "logme" in named
    assert 'class="row_heading' in booktext.table(df, index=True).to_html()


def test_glue_passes_python_values_without_display(monkeypatch):
    import myst_nb

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    booktext.glue(n=np.int64(3), tau=np.float64(0.5), name="breastmnist")
    assert calls == [("n", 3, False), ("tau", 0.5, False), ("name", "breastmnist", False)]
    assert type(calls[0][1]) is int and type(calls[1][1]) is float  # numpy scalars unwrapped: format specs apply

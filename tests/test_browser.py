"""The built book opened in headless Chromium: no missing image, no broken internal link, no traceback, at most
``browsercheck.MAX_VISIBLE_CODE_CELLS`` code cells outside a toggle per page, no table wider than the page, no
table with a bare 0..n-1 index.

``test_checker_*`` build a tiny site with known defects and make sure the checker reports each of them, so the
book test below can fail. ``test_built_book_in_browser`` checks ``_build/html`` (or ``$BOOK_HTML``): it skips
when the book has not been built or Chromium is absent, unless ``REQUIRE_BROWSER_CHECK=1`` (set by ``.ci/run``,
which builds the book before running the tests), where those are failures.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import booktext, browsercheck

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("REQUIRE_BROWSER_CHECK") == "1"


def _need_browser():
    try:
        browsercheck.find_browser()
        import selenium  # noqa: F401
    except (RuntimeError, ImportError) as err:
        if REQUIRED:
            pytest.fail(f"browser check required but unavailable: {err}")
        pytest.skip(str(err))


def _png(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)


def _page(body: str) -> str:
    return f"<!doctype html><html><head><title>t</title></head><body><main>{body}</main></body></html>"


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "sub").mkdir()
    _png(site / "ok.png")
    (site / "index.html").write_text(_page(
        '<h1 id="top">Home</h1><img src="ok.png"><a href="sub/good.html#part">good</a>'
        '<a href="sub/">folder index</a><a href="https://example.org/x">external</a><a href="#top">self</a>'))
    (site / "sub" / "index.html").write_text(_page("<p>folder</p>"))
    (site / "sub" / "good.html").write_text(_page('<h2 id="part">Part</h2><img src="../ok.png">'
                                                  '<a href="../index.html">home</a>'))
    (site / "missing_image.html").write_text(_page('<img src="_images/gone.png">'))
    (site / "corrupt_image.html").write_text(_page('<img src="not_a_png.png">'))
    (site / "not_a_png.png").write_text("this is not an image")
    (site / "broken_link.html").write_text(_page('<a href="nowhere.html">x</a>'))
    (site / "broken_anchor.html").write_text(_page('<a href="sub/good.html#no-such-part">x</a>'))
    (site / "traceback_text.html").write_text(_page(
        "<pre>Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom</pre>"))
    (site / "error_output.html").write_text(_page(
        '<div class="cell_output docutils container"><div class="output traceback highlight-ipythontb">'
        "<pre>ValueError</pre></div></div>"))
    limit = browsercheck.MAX_VISIBLE_CODE_CELLS
    cell = ('<div class="cell docutils container"><div class="cell_input docutils container"><pre>x = 1</pre>'
            '</div></div>')
    hidden = ('<div class="cell tag_hide-input docutils container"><details class="hide above-input"><summary>'
              'Show code</summary><div class="cell_input docutils container"><pre>y = 2</pre></div></details></div>')
    (site / "code_shown.html").write_text(_page(cell * (limit + 1)))
    (site / "code_hidden.html").write_text(_page(cell * limit + hidden * 10))
    wide = "<table><tr>" + "".join(f"<th>column_{i}</th>" for i in range(60)) + "</tr></table>"
    (site / "wide_table.html").write_text(_page(f'<div style="max-width: 700px">{wide}</div>'))
    (site / "wide_table_scrolls.html").write_text(_page(
        f'<div style="max-width: 700px"><div style="overflow-x: auto; max-width: 100%">{wide}</div></div>'))
    df = pd.DataFrame({"scorer": ["LogME", "LEEP", "SFDA"], "tau": [0.41, 0.29, 0.22]})
    (site / "bare_index.html").write_text(_page(df.to_html()))
    (site / "index_hidden.html").write_text(_page(booktext.table(df).to_html() + df.set_index("scorer").to_html()))
    return site


def test_checker_reports_each_defect(broken_site):
    _need_browser()
    reports = {r.page: r for r in browsercheck.check_site(broken_site, progress=False)}
    assert reports["index.html"].ok, reports["index.html"].problems()
    assert reports["sub/good.html"].ok, reports["sub/good.html"].problems()
    assert reports["missing_image.html"].bad_images == ["_images/gone.png"]
    assert reports["corrupt_image.html"].bad_images == ["not_a_png.png"]
    assert reports["broken_link.html"].broken_links == ["/nowhere.html"]
    assert reports["broken_anchor.html"].broken_links == ["/sub/good.html#no-such-part (no such anchor)"]
    assert reports["traceback_text.html"].traceback
    assert reports["error_output.html"].traceback
    assert not any(r.traceback for p, r in reports.items() if p not in {"traceback_text.html", "error_output.html"})
    assert reports["code_shown.html"].visible_code_cells == browsercheck.MAX_VISIBLE_CODE_CELLS + 1
    assert "code cells outside a toggle" in " ".join(reports["code_shown.html"].problems())
    assert reports["code_hidden.html"].ok, reports["code_hidden.html"].problems()
    assert reports["code_hidden.html"].visible_code_cells == browsercheck.MAX_VISIBLE_CODE_CELLS
    assert len(reports["wide_table.html"].wide_tables) == 1 and "column_0" in reports["wide_table.html"].wide_tables[0]
    assert reports["wide_table.html"].page_scrolls_sideways
    assert reports["wide_table_scrolls.html"].ok, reports["wide_table_scrolls.html"].problems()
    assert reports["bare_index.html"].bare_index_tables == ["table with a bare 0..2 index (scorer, tau)"]
    assert "bare 0..2 index" in " ".join(reports["bare_index.html"].problems())
    assert reports["index_hidden.html"].ok, reports["index_hidden.html"].problems()


def test_bare_index_tables_from_page_html():
    """pandas' default 0..n-1 row labels are flagged, as ``to_html`` and a ``Styler`` write them; a hidden,
    named or meaningful index, a Markdown table and a truncated table's ``...`` row are handled."""
    df = pd.DataFrame({"scorer": ["LogME", "LEEP", "SFDA"], "tau": [0.41, 0.29, 0.22]})
    flagged = browsercheck.bare_index_tables
    assert flagged(df.to_html()) == ["table with a bare 0..2 index (scorer, tau)"]
    assert flagged(df.style.to_html()) == ["table with a bare 0..2 index (scorer, tau)"]
    assert flagged(_page(df.to_html() + "<p>text</p>" + df.to_html())) == 2 * flagged(df.to_html())
    assert flagged(booktext.table(df).to_html()) == []                 # index hidden
    assert flagged(df.set_index("scorer").to_html()) == []             # a meaningful index
    assert flagged(df.rename_axis("rank").to_html()) == []             # a named index: the integers mean something
    assert flagged(df.set_axis([1, 2, 3]).to_html()) == []             # not 0..n-1
    assert len(flagged(df.rename_axis(columns="metric").to_html())) == 1  # the columns' name only
    assert flagged("<table><thead><tr><th>k</th><th>v</th></tr></thead>"
                   "<tbody><tr><td>0</td><td>a</td></tr><tr><td>1</td><td>b</td></tr></tbody></table>") == []
    with pd.option_context("display.max_rows", 6, "display.min_rows", 4):
        long = pd.DataFrame({"x": range(20)})._repr_html_()
    assert "..." in long and flagged(long) == ["table with a bare 0..19 index (x)"]
    report = browsercheck.PageReport("p.html", bare_index_tables=flagged(df.to_html()))
    assert not report.ok and "p.html: table with a bare 0..2 index" in report.problems()[0]


def test_chapter_screenshots_follow_the_toc(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/executed/05_correlation\n"
                   "  - file: book/executed/11_evidence\n  - file: book/references\n")
    shots = browsercheck.chapter_screenshots(tmp_path / "shots", toc)
    assert shots == {"book/executed/05_correlation.html": tmp_path / "shots" / "correlation.png",
                     "book/executed/11_evidence.html": tmp_path / "shots" / "evidence.png"}


def test_checker_cli_exit_status_and_screenshot(broken_site, tmp_path, capsys):
    _need_browser()
    shot = tmp_path / "home.png"
    status = browsercheck.main([str(broken_site), "--screenshot", f"index.html={shot}"])
    out = capsys.readouterr().out
    assert status == 1
    assert "broken internal link /nowhere.html" in out and "missing image _images/gone.png" in out
    assert shot.stat().st_size > 0 and (tmp_path / "home_figure.png").is_file()


def test_checker_names_a_missing_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="build the book first"):
        browsercheck.check_site(tmp_path)


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", [toc]) for c in part.get("chapters", [])]
    return [f + ".html" for f in files]


def test_built_book_in_browser():
    site = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
    if not (site / "index.html").is_file():
        if REQUIRED:
            pytest.fail(f"no built book at {site}: run `make book` before the tests")
        pytest.skip(f"no built book at {site} (run `make book` first)")
    _need_browser()
    reports = browsercheck.check_site(site, progress=False)
    opened = {r.page for r in reports}
    missing = [p for p in _toc_pages() if p not in opened]
    assert not missing, f"chapters of _toc.yml missing from the built book: {missing}"
    problems = [p for r in reports for p in r.problems()]
    assert not problems, "\n".join(problems)

"""Check the built HTML book in a real browser (headless Chromium through chromedriver).

Every page of ``_build/html`` is served on localhost and opened in headless Chromium, which reports:

* **missing images**: an ``<img>`` that the browser could not decode (``naturalWidth == 0`` once loaded);
* **broken internal links**: an ``<a href>`` to this site whose file does not exist, or whose ``#fragment`` is
  not an element id (or ``name``) of the target page;
* **tracebacks**: a page that shows a Python traceback (text ``Traceback (most recent call last)`` or a
  notebook error output, i.e. an element with class ``traceback`` / ``output_error`` / ``ansi-red-fg``
  inside an error cell);
* **code shown outside a toggle**: more than :data:`MAX_VISIBLE_CODE_CELLS` notebook code cells whose input is
  not inside a ``<details>`` toggle (Jupyter Book's ``hide-input``); a chapter shows only the calls a reader
  copies;
* **tables wider than the page**: a ``<table>`` wider than the content column (by more than
  :data:`WIDTH_TOLERANCE_PX`) at a :data:`WINDOW_WIDTH` px window, unless it sits in a box that scrolls
  horizontally (``overflow-x: auto | scroll``) and itself fits; and a page that scrolls sideways as a whole;
* **bare integer index**: a rendered pandas table whose row labels are the bare ``0, 1, ..., n-1`` of a default
  ``RangeIndex`` (:func:`bare_index_tables`, on the page's HTML); a reader learns nothing from them, so a chapter
  hides the index (``helpers.booktext.table``) or sets a meaningful one.

It can also save small PNG screenshots of chosen pages, or of every chapter of ``_toc.yml``. Command line::

    python -m helpers.browsercheck _build/html \
        --screenshot book/executed/05_correlation.html=results/screenshots/correlation.png
    python -m helpers.browsercheck _build/html --chapter-screenshots results/screenshots

It exits with status 1 and lists every problem when anything is wrong. Chromium runs with
``--no-sandbox --disable-gpu --disable-background-networking --disable-component-update --no-first-run`` and a
fresh ``--user-data-dir``: the machines this runs on have no network and often run as root.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import html.parser
import http.server
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

from .book import toc_chapters
from .paths import PROJECT_ROOT

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                  "--hide-scrollbars")
# Sphinx/jupyter-book support pages, not chapters: they are still opened, but only for images and tracebacks.
_SKIP_DIRS = {"_sources", "_static", "_images", "_downloads"}
_TRACEBACK_TEXT = "Traceback (most recent call last)"
MAX_VISIBLE_CODE_CELLS = 3   # notebook code cells a page may show outside a toggle
WINDOW_WIDTH = 1280          # px: the browser window the layout is measured in
WIDTH_TOLERANCE_PX = 2       # px a table may exceed the content column by (rounding, borders)

# Runs inside the page: returns broken images, the page's internal links and whether it shows a traceback.
_PAGE_PROBE = r"""
const out = {badImages: [], links: [], ids: [], traceback: false, title: document.title};
for (const img of document.images) {
  if (!img.complete || img.naturalWidth === 0) out.badImages.push(img.getAttribute('src') || '(no src)');
}
for (const a of document.querySelectorAll('a[href]')) out.links.push(a.href);
for (const el of document.querySelectorAll('[id]')) out.ids.push(el.id);
for (const el of document.querySelectorAll('a[name]')) out.ids.push(el.getAttribute('name'));
const text = document.body ? document.body.innerText : '';
out.traceback = text.includes('TRACEBACK_TEXT') ||
  document.querySelector('.output.traceback, .output_error, div.cell_output .traceback') !== null;
// code cells whose input is not inside a <details> toggle (hide-input renders one)
out.visibleCode = Array.from(document.querySelectorAll('div.cell_input'))
  .filter(el => el.closest('details') === null).length;
// tables wider than the content column, unless a horizontally scrolling box that fits holds them
const content = ['article.bd-article', 'main article', 'article', 'main']
  .map(sel => document.querySelector(sel)).find(el => el) || document.body;
const limit = content.getBoundingClientRect().width + TOLERANCE;
out.contentWidth = Math.round(content.getBoundingClientRect().width);
out.wideTables = [];
const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX) &&
                      el.getBoundingClientRect().width <= limit;
for (const table of content.querySelectorAll('table')) {
  const width = Math.max(table.scrollWidth, table.getBoundingClientRect().width);
  if (width <= limit) continue;
  let held = false;
  for (let el = table; el && el !== content.parentElement; el = el.parentElement) {
    if (scrolls(el)) { held = true; break; }
  }
  if (!held) {
    const head = Array.from(table.querySelectorAll('th')).slice(0, 4).map(th => th.innerText.trim()).join(', ');
    out.wideTables.push(`${Math.round(width)} px table (${head || 'no header'})`);
  }
}
out.pageScrollsSideways = document.documentElement.scrollWidth > window.innerWidth + TOLERANCE;
return out;
""".replace("TRACEBACK_TEXT", _TRACEBACK_TEXT).replace("TOLERANCE", str(WIDTH_TOLERANCE_PX))


_SCROLL_TO_FIGURE = r"""
const img = document.querySelector('article img, main img');
if (!img) return false;
img.scrollIntoView({block: 'start'});
window.scrollBy(0, -80);
return true;
"""


class _TableScanner(html.parser.HTMLParser):
    """Collects, per ``<table>``, the cell texts of its header rows and the first cell (tag, text) of its body
    rows. Rows outside ``<thead>`` count as body rows; nested tables are scanned on their own."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self._open: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._open.append({"head": [], "body": [], "section": None, "row": None, "cell": None})
        elif not self._open:
            return
        t = self._open[-1]
        if tag in ("thead", "tbody", "tfoot"):
            t["section"] = tag
        elif tag == "tr":
            t["row"] = []
        elif tag in ("th", "td") and t["row"] is not None:
            t["cell"] = [tag, ""]

    def handle_data(self, data):
        if self._open and self._open[-1]["cell"] is not None:
            self._open[-1]["cell"][1] += data

    def handle_endtag(self, tag):
        if not self._open:
            return
        t = self._open[-1]
        if tag in ("th", "td") and t["cell"] is not None and t["row"] is not None:
            t["row"].append((t["cell"][0], t["cell"][1].strip()))
            t["cell"] = None
        elif tag == "tr" and t["row"] is not None:
            if t["row"]:
                (t["head"] if t["section"] == "thead" else t["body"]).append(t["row"])
            t["row"] = None
        elif tag in ("thead", "tbody", "tfoot"):
            t["section"] = None
        elif tag == "table":
            self.tables.append(self._open.pop())


def _counts_from_zero(labels: list[str]) -> bool:
    """``labels`` read 0, 1, 2, ... (pandas' ``...`` row of a truncated table may skip a stretch)."""
    segments, current = [], []
    for label in labels:
        if label in ("...", "…"):
            segments.append(current)
            current = []
        elif label.isdigit():
            current.append(int(label))
        else:
            return False
    segments = [seg for seg in segments + [current] if seg]
    if not segments or segments[0][0] != 0:
        return False
    return all(b - a == 1 for seg in segments for a, b in zip(seg, seg[1:])) and \
        all(nxt[0] > prev[-1] for prev, nxt in zip(segments, segments[1:]))


def bare_index_tables(page_html: str) -> list[str]:
    """The tables of ``page_html`` that show a bare integer index: every body row starts with a ``<th>`` (the
    row label pandas writes, as ``DataFrame.to_html`` and a ``Styler`` do), the labels read ``0, 1, ..., n-1``
    in order (the ``...`` row of a truncated table aside), and no header row names the index (pandas writes the
    index name alone in a header row of its own). Each is described by its last label and first column
    headers. Tables with ``<td>`` cells only
    (Markdown tables, a ``Styler`` with its index hidden) are never flagged."""
    scanner = _TableScanner()
    scanner.feed(page_html)
    scanner.close()
    out = []
    for t in scanner.tables:
        body = t["body"]
        if not body or any(row[0][0] != "th" for row in body):
            continue
        if not _counts_from_zero([row[0][1] for row in body]):
            continue
        if any(row[0][1] and not any(text for _, text in row[1:]) for row in t["head"]):
            continue  # a header row holding only the index's name: the integers mean something
        head = ", ".join(text for _, text in (t["head"][0] if t["head"] else [])[:5] if text)
        out.append(f"table with a bare 0..{body[-1][0][1]} index ({head or 'no header'})")
    return out


@dataclass
class PageReport:
    page: str
    bad_images: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)
    traceback: bool = False
    visible_code_cells: int = 0
    wide_tables: list[str] = field(default_factory=list)
    content_width: int = 0
    page_scrolls_sideways: bool = False
    bare_index_tables: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        out = [f"{self.page}: missing image {src}" for src in self.bad_images]
        out += [f"{self.page}: broken internal link {href}" for href in self.broken_links]
        if self.traceback:
            out.append(f"{self.page}: shows a Python traceback")
        if self.visible_code_cells > MAX_VISIBLE_CODE_CELLS:
            out.append(f"{self.page}: shows {self.visible_code_cells} code cells outside a toggle (at most "
                       f"{MAX_VISIBLE_CODE_CELLS}: tag the others hide-input)")
        out += [f"{self.page}: {t} wider than the {self.content_width} px content column and not in a scrolling "
                "box" for t in self.wide_tables]
        if self.page_scrolls_sideways:
            out.append(f"{self.page}: the page scrolls sideways at {WINDOW_WIDTH} px")
        out += [f"{self.page}: {t}: hide it (helpers.booktext.table) or set a meaningful index"
                for t in self.bare_index_tables]
        return out


def find_browser() -> tuple[str, str]:
    """Paths of the Chromium binary and of chromedriver; ``RuntimeError`` naming what is missing."""
    chrome = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chrome), ("chromedriver", driver)) if not path]
    if missing:
        raise RuntimeError(f"{' and '.join(missing)} not found: install the Debian packages `chromium` and "
                           "`chromium-driver` (or set $CHROMIUM / $CHROMEDRIVER to their paths)")
    return chrome, driver


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output readable
        pass


@contextlib.contextmanager
def serve(directory: str | Path):
    """Serve ``directory`` on a free localhost port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def headless_chromium(width: int = WINDOW_WIDTH, height: int = 1000):
    """A selenium WebDriver on headless Chromium with a throw-away profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome, driver_path = find_browser()
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager try to download a driver
    profile_dir = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


def html_pages(root: str | Path) -> list[str]:
    """Site-relative paths of every HTML page under ``root`` (support folders excluded)."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if not (set(p.relative_to(root).parts[:-1]) & _SKIP_DIRS))


def _wait_loaded(driver, timeout: float = 30.0) -> None:
    """Wait for the document and every image to finish loading (or failing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = driver.execute_script(
            "return document.readyState === 'complete' && "
            "Array.from(document.images).every(i => i.complete);")
        if done:
            return
        time.sleep(0.05)


def check_site(root: str | Path, *, screenshots: dict[str, str | Path] | None = None,
               screenshot_width: int = 900, progress: bool = True) -> list[PageReport]:
    """Open every page of the built site ``root`` in headless Chromium and report its problems.

    ``screenshots`` maps a site-relative page (e.g. ``"book/executed/05_correlation.html"``) to a PNG path; the
    screenshot of the top of that page is saved there, and one scrolled to the page's first figure beside it
    (``<name>_figure.png``), both resized to ``screenshot_width`` pixels wide.
    """
    root = Path(root)
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root} has no index.html: build the book first (make book)")
    pages = html_pages(root)
    screenshots = {k.lstrip("/"): Path(v) for k, v in (screenshots or {}).items()}
    unknown = sorted(set(screenshots) - set(pages))
    if unknown:
        raise ValueError(f"screenshot pages not in the site: {unknown}")
    reports: dict[str, PageReport] = {}
    ids_by_page: dict[str, set[str]] = {}
    links_by_page: dict[str, list[str]] = {}
    with serve(root) as base, headless_chromium() as driver:
        for i, page in enumerate(pages):
            if progress:
                print(f"[browser] {i + 1}/{len(pages)} {page}", file=sys.stderr, flush=True)
            driver.get(base + page)
            _wait_loaded(driver)
            probe = driver.execute_script(_PAGE_PROBE)
            reports[page] = PageReport(page, bad_images=probe["badImages"], traceback=bool(probe["traceback"]),
                                       visible_code_cells=int(probe["visibleCode"]),
                                       wide_tables=list(probe["wideTables"]),
                                       content_width=int(probe["contentWidth"]),
                                       page_scrolls_sideways=bool(probe["pageScrollsSideways"]),
                                       bare_index_tables=bare_index_tables(driver.page_source))
            ids_by_page[page] = set(probe["ids"])
            links_by_page[page] = probe["links"]
            if page in screenshots:
                _save_screenshot(driver, screenshots[page], screenshot_width)
                # a second view of the same page, scrolled to its first figure, so a reader sees a plot
                if driver.execute_script(_SCROLL_TO_FIGURE):
                    time.sleep(0.2)
                    shot = screenshots[page]
                    _save_screenshot(driver, shot.with_name(shot.stem + "_figure" + shot.suffix), screenshot_width)
        # internal links are resolved after every page has been seen, so fragments can be checked
        for page, links in links_by_page.items():
            for href in links:
                problem = _check_link(href, base, root, ids_by_page, page)
                if problem:
                    reports[page].broken_links.append(problem)
    return [reports[p] for p in pages]


def _check_link(href: str, base: str, root: Path, ids_by_page: dict[str, set[str]], page: str) -> str | None:
    if not href.startswith(base):
        return None  # external (or mailto:, javascript:): not ours to check offline
    url, fragment = urldefrag(href)
    rel = unquote(urlparse(url).path).lstrip("/")
    target = root / rel
    if rel == "" or target.is_dir():
        rel = (rel.rstrip("/") + "/index.html").lstrip("/")
        target = root / rel
    if not target.is_file():
        return href[len(base) - 1:]
    if fragment and rel.endswith(".html"):
        ids = ids_by_page.get(rel)
        if ids is not None and unquote(fragment) not in ids:
            return href[len(base) - 1:] + " (no such anchor)"
    return None


def _save_screenshot(driver, path: Path, width: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    driver.save_screenshot(str(tmp))
    with Image.open(tmp) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im = im.quantize(colors=128)  # keeps the committed PNG small
        im.save(tmp, optimize=True)
    os.replace(tmp, path)


def chapter_screenshots(folder: str | Path, toc_path: str | Path | None = None) -> dict[str, Path]:
    """``{page: png}`` for every chapter of ``_toc.yml``: ``book/executed/05_correlation.html`` ->
    ``<folder>/correlation.png`` (the name without its number), so a new chapter gets one automatically."""
    names = toc_chapters(Path(toc_path) if toc_path else PROJECT_ROOT / "_toc.yml")
    return {f"book/executed/{n}.html": Path(folder) / f"{n.split('_', 1)[-1]}.png" for n in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="_build/html", help="built HTML folder (default _build/html)")
    parser.add_argument("--screenshot", action="append", default=[], metavar="PAGE=PNG",
                        help="save a screenshot of PAGE (site-relative) to PNG; repeatable")
    parser.add_argument("--chapter-screenshots", metavar="FOLDER", default=None,
                        help="save <FOLDER>/<chapter>.png (and <chapter>_figure.png) for every chapter of _toc.yml")
    parser.add_argument("--toc", default=None, help="the _toc.yml for --chapter-screenshots (default: the project's)")
    args = parser.parse_args(argv)
    shots = dict(s.split("=", 1) for s in args.screenshot)
    if args.chapter_screenshots:
        shots.update({k: str(v) for k, v in chapter_screenshots(args.chapter_screenshots, args.toc).items()})
    reports = check_site(args.site, screenshots=shots)
    problems = [p for r in reports for p in r.problems()]
    print(f"[browser] {len(reports)} pages opened in headless Chromium, {len(problems)} problems")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

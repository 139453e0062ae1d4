"""Chapter notebooks: text sources pair with notebooks, carry a papermill parameters cell, and run from the
papermill command line with parameters given there."""
import json
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from helpers.book import toc_chapters
from helpers.paths import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.py"))
BIN = Path(sys.executable).parent


def test_every_toc_chapter_has_a_source_and_every_source_a_chapter():
    chapters = toc_chapters()
    assert chapters, "_toc.yml lists no executed chapters"
    assert sorted(chapters) == sorted(p.stem for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_text_notebook_has_parameters_cell_and_pairing(path):
    nb = jupytext.read(path)
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one papermill parameters cell"
    assert "profile = " in params[0].source
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    headings = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for section in ("## Overview", "## Prerequisites", "## Imports", "## Summary", "## What's next"):
        assert section in headings, f"{path.name} lacks {section}"
    # the round trip text -> notebook -> text is stable, so diffs of the .py are the review surface
    assert jupytext.writes(jupytext.reads(jupytext.writes(nb, "py:percent"), "py:percent"), "py:percent") == \
        jupytext.writes(nb, "py:percent")


def test_data_chapter_runs_under_papermill_cli_for_a_subset_of_flags(tmp_path, shared_data_root):
    ipynb = tmp_path / "01_data.ipynb"
    out = tmp_path / "01_data.out.ipynb"
    subprocess.run([str(BIN / "jupytext"), "--to", "ipynb", str(PROJECT_ROOT / "notebooks" / "01_data.py"),
                    "-o", str(ipynb)], check=True, capture_output=True)
    env_results = tmp_path / "results"
    proc = subprocess.run(
        [str(BIN / "papermill"), str(ipynb), str(out), "-p", "profile", "quick", "-p", "flags", "breastmnist",
         "-p", "per_class", "3", "--cwd", str(PROJECT_ROOT), "-k", "python3"],
        capture_output=True, text=True,
        env={**__import__("os").environ, "RESULTS_ROOT": str(env_results)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = json.loads(out.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "flags = \"breastmnist\"" in "".join(injected[0]["source"])
    text = json.dumps(nb["cells"])
    assert "image/png" in text and "pneumoniamnist" not in "".join(
        "".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert sorted(p.name for p in (env_results / "quick").glob("data_*.csv")) == \
        ["data_class_counts.csv", "data_files.csv", "data_folds.csv"]


def test_bibliography_parses_and_every_citation_resolves():
    """A broken references.bib only fails the HTML build, after every chapter has run: catch it here."""
    import re
    pybtex = pytest.importorskip("pybtex.database")
    entries = pybtex.parse_file(str(PROJECT_ROOT / "book" / "references.bib")).entries
    texts = [p.read_text() for p in NOTEBOOKS] + [p.read_text() for p in (PROJECT_ROOT / "book").glob("*.md")]
    cited = {key.strip() for text in texts
             for keys in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text) for key in keys.split(",")}
    assert cited, "no citations found: the pattern no longer matches how chapters cite"
    assert not cited - set(entries), f"cited but not in references.bib: {sorted(cited - set(entries))}"


# ---------------------------------------------------------------------------------------------- reading the book
MAX_VISIBLE_CODE_CELLS = 3  # code cells a chapter shows without a toggle: only the API calls a reader copies
HIDDEN = {"hide-input", "remove-input", "hide-cell", "remove-cell"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_hides_its_code_but_the_lesson(path):
    nb = jupytext.read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    visible = [c.source.splitlines()[0] for c in code if not HIDDEN & set(c.metadata.get("tags", []))]
    assert len(visible) <= MAX_VISIBLE_CODE_CELLS, f"{path.name} shows {len(visible)} code cells: {visible}"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert HIDDEN & set(params[0].metadata["tags"]), "the parameters cell is hidden behind a toggle"


def test_injected_parameters_cell_is_removed_from_the_page(tmp_path):
    import nbformat

    from helpers.book import hide_injected_parameters

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'quick'", metadata={"tags": ["parameters", "hide-input"]}),
                nbformat.v4.new_code_cell("profile = 'paper'", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(profile)")]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    hide_injected_parameters(path)
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells]
    assert tags == [["parameters", "hide-input"], ["injected-parameters", "remove-cell"], []]


def test_chapter_run_before_its_stage_says_what_to_run_first(tmp_path):
    """The Correlation chapter on a fresh clone (no results): the error names the stage and the command."""
    ipynb = tmp_path / "05.ipynb"
    subprocess.run([str(BIN / "jupytext"), "--to", "ipynb", str(PROJECT_ROOT / "notebooks" / "05_correlation.py"),
                    "-o", str(ipynb)], check=True, capture_output=True)
    proc = subprocess.run(
        [str(BIN / "papermill"), str(ipynb), str(tmp_path / "out.ipynb"), "-p", "profile", "quick",
         "--cwd", str(PROJECT_ROOT), "-k", "python3"], capture_output=True, text=True,
        env={**__import__("os").environ, "RESULTS_ROOT": str(tmp_path / "results")})
    assert proc.returncode != 0
    assert "MissingResultError" in proc.stderr and "ground_truth.csv does not exist yet" in proc.stderr
    assert "python -m helpers.run finetuning --profile quick" in proc.stderr

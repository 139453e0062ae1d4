"""Build the book: run every chapter notebook through papermill with a profile, then ``jupyter-book build``.

    python -m helpers.book --profile quick            # execute all chapters, build HTML into _build/html
    python -m helpers.book --only 01_data -p flags=breastmnist --no-build

Chapters are the ``book/executed/<name>`` entries of ``_toc.yml``; their source is ``notebooks/<name>.py``
(jupytext percent format). Each executed notebook is written to a temp file and renamed into place only when
the whole notebook ran, so a failing chapter never leaves a half-executed page behind (it is kept as
``<name>.failed.ipynb`` for inspection) and fails the build.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .paths import PROJECT_ROOT

EXECUTED_DIR = PROJECT_ROOT / "book" / "executed"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


def toc_chapters(toc_path: Path = PROJECT_ROOT / "_toc.yml") -> list[str]:
    """Names of the executed-notebook chapters in ``_toc.yml``, in book order."""
    toc = yaml.safe_load(toc_path.read_text())
    names: list[str] = []

    def walk(entries):
        for entry in entries or []:
            file = entry.get("file", "")
            if file.startswith("book/executed/"):
                names.append(file.split("/")[-1])
            walk(entry.get("sections"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return names


def _parse_value(text: str):
    value = yaml.safe_load(text)
    return text if value is None and text not in ("null", "None", "~") else value


def execute_chapter(name: str, profile: str, parameters: dict | None = None) -> Path:
    """Execute ``notebooks/<name>.py`` with papermill into ``book/executed/<name>.ipynb``."""
    import jupytext
    import papermill

    source = NOTEBOOKS_DIR / f"{name}.py"
    if not source.is_file():
        raise FileNotFoundError(f"chapter {name!r} is in _toc.yml but {source} does not exist")
    EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
    staged = EXECUTED_DIR / f".{name}.input.ipynb"
    running = EXECUTED_DIR / f".{name}.running.ipynb"
    final = EXECUTED_DIR / f"{name}.ipynb"
    jupytext.write(jupytext.read(source), staged)
    params = {"profile": profile, **(parameters or {})}
    try:
        papermill.execute_notebook(str(staged), str(running), parameters=params, cwd=str(PROJECT_ROOT),
                                   kernel_name="python3", progress_bar=False, request_save_on_cell_execute=True)
    except BaseException:
        if running.exists():
            os.replace(running, EXECUTED_DIR / f"{name}.failed.ipynb")
        raise
    finally:
        staged.unlink(missing_ok=True)
    hide_injected_parameters(running)
    os.replace(running, final)
    (EXECUTED_DIR / f"{name}.failed.ipynb").unlink(missing_ok=True)
    return final


def hide_injected_parameters(path: Path) -> None:
    """Give papermill's injected-parameters cell the ``remove-cell`` tag, so the book shows the parameters once
    (the chapter's own parameters cell, behind a toggle), not a second time as the values papermill passed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            changed = True
    if changed:
        nbformat.write(nb, path)


def build_html(strict: bool = True) -> None:
    """``jupyter-book build`` of the project root into ``_build/html``; warnings fail the build when strict."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(PROJECT_ROOT), "--path-output",
           str(PROJECT_ROOT)]
    if strict:
        cmd += ["--warningiserror", "--keep-going"]
    subprocess.run(cmd, check=True, cwd=PROJECT_ROOT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", help="profile name or path (default: quick)")
    parser.add_argument("--only", nargs="*", help="execute only these chapters (names as in _toc.yml)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="extra papermill parameter for every executed chapter (YAML value)")
    parser.add_argument("--no-execute", action="store_true", help="build from already executed notebooks")
    parser.add_argument("--no-build", action="store_true", help="execute only, do not build HTML")
    parser.add_argument("--lenient", action="store_true", help="do not turn Sphinx warnings into errors")
    args = parser.parse_args(argv)

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param needs KEY=VALUE, got {item!r}")
        params[key] = _parse_value(value)
    chapters = toc_chapters()
    if args.only:
        unknown = sorted(set(args.only) - set(chapters))
        if unknown:
            parser.error(f"unknown chapters {unknown}; _toc.yml has {chapters}")
        chapters = [c for c in chapters if c in args.only]
    if not args.no_execute:
        for name in chapters:
            start = time.perf_counter()
            print(f"[book] executing {name} (profile {args.profile})", flush=True)
            execute_chapter(name, args.profile, params)
            print(f"[book] {name} done in {time.perf_counter() - start:.0f} s", flush=True)
    if not args.no_build:
        missing = [c for c in toc_chapters() if not (EXECUTED_DIR / f"{c}.ipynb").is_file()]
        if missing:
            print(f"[book] chapters not executed yet: {missing}", file=sys.stderr)
            return 1
        build_html(strict=not args.lenient)
        print(f"[book] HTML in {PROJECT_ROOT / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where things live: the data root, the shared fixtures, the results folder.

The data root holds ``medmnist/`` and ``segmentation/``. It is, in order of precedence,
an explicit argument, the environment variable ``DATA_ROOT``, or ``data/`` in the project.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Return the data root: ``root`` if given, else ``$DATA_ROOT``, else ``<project>/data``.

    Relative paths are resolved against the current working directory, as a user typing them expects.
    """
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get("DATA_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    return PROJECT_ROOT / "data"


def fixtures_root() -> Path:
    """Folder of the shared reference fixtures (``metrics/`` inside).

    ``$FIXTURES_ROOT`` if set, else ``<data root>/../fixtures`` (the layout of ``../shared``),
    else ``<project>/../shared/fixtures``.
    """
    env = os.environ.get("FIXTURES_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    beside_data = data_root().parent / "fixtures"
    if beside_data.is_dir():
        return beside_data
    return (PROJECT_ROOT.parent / "shared" / "fixtures").resolve()


def results_root(profile: str | None = None) -> Path:
    """``<project>/results`` (or ``$RESULTS_ROOT``), and ``.../<profile>`` when a profile is named."""
    env = os.environ.get("RESULTS_ROOT")
    base = Path(env).expanduser().resolve() if env else PROJECT_ROOT / "results"
    return base / profile if profile else base


# ---------------------------------------------------------------------------------------------- what makes what

#: result table (a name under ``results/<profile>/``, ``*`` a wildcard) -> ("stage" | "chapter", its name)
PRODUCERS = (
    ("ground_truth*.csv", "stage", "finetuning"),
    ("finetuning*.csv", "stage", "finetuning"),
    ("scores.csv", "stage", "scoring"),
    ("scoring*.csv", "stage", "scoring"),
    ("pretraining*.csv", "stage", "pretraining"),
    ("segmentation*.csv", "stage", "segmentation"),
    ("representations*.csv", "stage", "representations"),
    ("data_*.csv", "chapter", "01_data"),
    ("correlation*.csv", "chapter", "05_correlation"),
    ("sources.csv", "chapter", "02_pretraining"),
    ("reference/*", "chapter", "06_reproduction"),
)
#: the chapter that runs each stage (and shows its results)
STAGE_CHAPTERS = {"pretraining": "02_pretraining", "finetuning": "03_finetuning", "scoring": "04_scoring",
                  "segmentation": "07_segmentation", "representations": "10_representations"}


class MissingResultError(FileNotFoundError):
    """A result table a chapter or stage reads is not there yet; the message names what makes it."""


def _profile_name(profile) -> str:
    if isinstance(profile, dict):
        return profile["name"]
    return Path(str(profile)).stem if str(profile).endswith((".yml", ".yaml")) else str(profile)


def producer(name: str) -> tuple[str, str] | None:
    """``("stage", <stage>)`` or ``("chapter", <chapter>)`` that writes the result ``name``; None if unknown."""
    from fnmatch import fnmatch

    return next(((kind, who) for pattern, kind, who in PRODUCERS if fnmatch(name, pattern)), None)


def how_to_make(name: str, profile) -> str:
    """The sentence that says which stage or chapter writes ``name`` and the exact command that runs it."""
    p = _profile_name(profile)
    made = producer(name)
    if made is None:
        return f"no stage or chapter of this project is known to write {name}"
    kind, who = made
    if kind == "stage":
        return (f"it is written by the {who!r} stage: run `python -m helpers.run {who} --profile {p}` first (or "
                f"`python -m helpers.run all --profile {p}` for every stage in order; the {STAGE_CHAPTERS[who]} "
                "chapter runs the same stage)")
    return (f"it is written by the {who} chapter: run `python -m helpers.book --profile {p} --only {who} "
            "--no-build` first")


def require_result(profile, name: str, results_dir=None) -> Path:
    """Path of the result table ``name`` of ``profile`` (``results/<profile>/<name>``, or under
    ``results_dir``), or :class:`MissingResultError` naming the stage or chapter that writes it and the command.

    ``reference/...`` names live in ``results/reference/`` whatever the profile."""
    if results_dir is not None:
        base = Path(results_dir)
    else:
        base = results_root() if name.startswith("reference/") else results_root(_profile_name(profile))
    path = base / name
    if not path.is_file():
        if profile is None:  # a results folder is named after its profile (results/<profile>/)
            profile = base.name
        raise MissingResultError(f"{path} does not exist yet; {how_to_make(name, profile)}")
    return path

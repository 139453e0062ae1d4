"""The package's layers hold (benchmarks/layers.py measures them; the layer map is its ``LAYERS``)."""
import importlib
import importlib.util
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("layers", ROOT / "benchmarks" / "layers.py")
layers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layers)


@pytest.fixture(scope="module")
def measured():
    return layers.measure(ROOT / "helpers")


def test_no_import_cycles(measured):
    assert measured["cycles"] == []


def test_upward_imports_are_few_and_explained(measured):
    assert len(measured["upward_pairs"]) <= 2, measured["upward_pairs"]
    assert all(reason for *_, reason in measured["upward"]), [u for u in measured["upward"] if not u[-1]]


def test_few_function_level_imports(measured):
    assert measured["function_level_statements"] < 20, measured["function_level"]


def test_no_unexplained_large_module(measured):
    assert measured["large_unexplained"] == {}


def test_compatibility_table_points_at_real_names():
    from helpers import compat

    for old, names in compat.MOVED.items():
        for name, new in names.items():
            module = importlib.import_module(new)
            assert hasattr(module, name), f"{old}.{name} -> {new}.{name} does not exist"


def test_the_measure_finds_what_it_should(tmp_path):
    """A cycle, an upward import without a reason and a function-level import, in a tiny package."""
    pkg = tmp_path / "helpers"
    (pkg / "stages").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data.py").write_text("from .stages import run\n")  # library -> stages: upward, no reason
    (pkg / "stages" / "__init__.py").write_text(textwrap.dedent("""
        from .. import data

        def run():
            from ..data import x  # function level, and with the line above a cycle data <-> stages
        """))
    m = layers.measure(pkg)
    assert m["cycles"] == [["helpers.data", "helpers.stages"]]
    assert [(a, b) for a, b, *_ in m["upward"]] == [("helpers.data", "helpers.stages")]
    assert m["upward"][0][-1] == ""
    assert m["function_level_statements"] == 1


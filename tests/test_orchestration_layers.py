"""The stages, engines and orchestration as layers (benchmarks/layers.py reads the imports; nothing is run)."""
import importlib.util
import sys

from helpers.paths import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location("layers", PROJECT_ROOT / "benchmarks" / "layers.py")
layers = importlib.util.module_from_spec(_spec)
sys.modules["layers"] = layers
_spec.loader.exec_module(layers)

#: the modules of the stages / engines / orchestration split
OWN = ("helpers.orchestration", "helpers.compat", "helpers.stages", "helpers.stages.base", "helpers.stages.launch",
       "helpers.stages.planning", "helpers.stages.throughput", "helpers.stages.inputs",
       "helpers.stages.representations", "helpers.representations", "helpers.viz", "helpers.engines",
       "helpers.engines.common", "helpers.engines.local", "helpers.engines.ray", "helpers.run",
       "helpers.segmentation")


def test_no_cycle_runs_through_the_stages_engines_or_orchestration():
    found = layers.imports()
    for cycle in layers.cycles({(a, b) for a, b, *_ in found}):
        shared = set(cycle) & {"helpers.orchestration", "helpers.stages", "helpers.stages.representations",
                               "helpers.representations", "helpers.training", "helpers.profiles",
                               *(m for m in cycle if m.startswith("helpers.engines"))}
        assert not shared, f"import cycle through {sorted(shared)}: {cycle}"


def test_the_stages_reach_up_only_through_one_door():
    up = [(a, b, reason) for a, b, _, _, reason in layers.imports() if a in OWN and layers.layer(b) > layers.layer(a)]
    assert [(a, b) for a, b, _ in up] == [("helpers.stages.launch", "helpers.orchestration")]
    assert all(reason for *_, reason in up)


def test_engines_import_the_stage_contract_not_the_stage_modules():
    for a, b, *_ in layers.imports():
        if a.startswith("helpers.engines") and b.startswith("helpers.stages"):
            assert b in ("helpers.stages", "helpers.stages.base"), (a, b)


def test_nothing_here_imports_the_deprecated_training_shim_and_no_module_is_over_the_limit():
    assert not [(a, line) for a, b, line, *_ in layers.imports() if a in OWN and b == "helpers.training"]
    sizes = {m: len(p.read_text().splitlines()) for m, p in layers.modules().items() if m in OWN}
    assert max(sizes.values()) <= layers.MAX_LINES, sizes


def test_compat_is_the_foundation():
    assert not [b for a, b, *_ in layers.imports() if a == "helpers.compat"]

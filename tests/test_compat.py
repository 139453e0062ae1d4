"""Old names of moved objects (helpers.compat): each still gives the very object, with a DeprecationWarning."""
import ast
import importlib
import sys
import warnings

import pytest

from helpers import compat


def test_compat_is_foundation_imports_nothing_from_helpers():
    tree = ast.parse(open(compat.__file__).read())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("helpers"), ast.unparse(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("helpers") for a in node.names), ast.unparse(node)


@pytest.mark.parametrize("old", sorted(compat.MOVED))
def test_every_moved_name_is_served_from_its_new_module_with_a_warning(old):
    module = importlib.import_module(old)
    for name, new in compat.MOVED[old].items():
        with pytest.warns(DeprecationWarning, match=f"{old}.{name} is now {new}.{name}"):
            value = getattr(module, name)
        assert value is getattr(importlib.import_module(new), name)
        assert name not in vars(module), f"{old} still defines {name}: the forward would never run"


def test_an_unknown_name_is_still_an_attribute_error():
    from helpers import stages

    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        stages.nothing_here  # noqa: B018


def test_the_stages_face_documented_to_users_still_runs(tmp_path):
    """``from helpers import stages; stages.plan(...)``, as the README and earlier docstrings show."""
    from helpers import orchestration, stages

    with pytest.warns(DeprecationWarning, match="helpers.stages.plan is now helpers.orchestration.plan"):
        plan = stages.plan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = plan(["pretraining"], "quick", tmp_path / "r")
        text = stages.plan_text(old)
    new = orchestration.plan(["pretraining"], "quick", tmp_path / "r")
    assert text.splitlines()[:-1] == orchestration.plan_text(new).splitlines()[:-1]  # the last: seconds to plan


def test_the_training_shim_warns_and_keeps_its_names():
    from helpers import trainer
    from helpers.stages import pretraining

    sys.modules.pop("helpers.training", None)
    with pytest.warns(DeprecationWarning, match="helpers.training is deprecated"):
        training = importlib.import_module("helpers.training")
    assert training.Run is trainer.Run and training.sources_dir is pretraining.sources_dir

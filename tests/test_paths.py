"""What makes each result table, and the error that names it when a chapter or stage reads one too early."""
import pandas as pd
import pytest

from helpers import paths, scoring
from helpers.engines.common import Report


def test_require_result_names_stage_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RESULTS_ROOT", str(tmp_path))
    with pytest.raises(paths.MissingResultError) as info:
        paths.require_result("paper", "ground_truth.csv")
    msg = str(info.value)
    assert str(tmp_path / "paper" / "ground_truth.csv") in msg
    assert "'finetuning' stage" in msg and "python -m helpers.run finetuning --profile paper" in msg
    assert isinstance(info.value, FileNotFoundError)  # code catching FileNotFoundError still works
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "ground_truth.csv").write_text("source\n")
    assert paths.require_result({"name": "paper"}, "ground_truth.csv") == tmp_path / "paper" / "ground_truth.csv"


@pytest.mark.parametrize("name, command", [
    ("scores.csv", "python -m helpers.run scoring --profile quick"),
    ("segmentation_ground_truth.csv", "python -m helpers.run segmentation --profile quick"),
    ("representations_cca.csv", "python -m helpers.run representations --profile quick"),
    ("data_files.csv", "python -m helpers.book --profile quick --only 01_data --no-build"),
    ("reference/dovile2024_weighted_tau.csv", "--only 06_reproduction"),
])
def test_every_kind_of_result_has_a_producer(tmp_path, monkeypatch, name, command):
    monkeypatch.setenv("RESULTS_ROOT", str(tmp_path))
    with pytest.raises(paths.MissingResultError, match=command.replace("-", r"\-")):
        paths.require_result("quick", name)


def test_unknown_table_says_so(tmp_path):
    with pytest.raises(paths.MissingResultError, match="no stage or chapter of this project is known"):
        paths.require_result("quick", "mystery.csv", results_dir=tmp_path)


def test_stage_table_reader_names_the_stage(tmp_path):
    folder = tmp_path / "myprofile"
    folder.mkdir()
    with pytest.raises(paths.MissingResultError, match="python -m helpers.run scoring --profile myprofile"):
        scoring.read_scores(folder)
    pd.DataFrame({"source": ["a"], "target": ["b"], "metric": ["logme"], "score": [1.0], "status": ["ok"],
                  "reason": ["r"]}).to_csv(folder / "scores.csv", index=False)
    assert scoring.read_scores(folder)["reason"].tolist() == ["r"]


def test_run_prints_what_to_run_first():
    from helpers.run import run_first

    report = Report("local")
    report.problems = [("finetuning:x", "blocked", "pretraining:pneumoniamnist is not done: run its stage first"),
                       ("finetuning:y", "failed", "boom")]
    assert run_first(report, ["finetuning"], "quick") == (
        "[run] some units wait for stages that have not run; run first: "
        "python -m helpers.run pretraining --profile quick")
    assert run_first(report, ["pretraining", "finetuning"], "quick") == ""

import os
from pathlib import Path

import pytest

from helpers.paths import PROJECT_ROOT, data_root, fixtures_root

# Tests read the real data through the project's data root, as CI does (DATA_ROOT=../shared/data).
if "DATA_ROOT" not in os.environ and (PROJECT_ROOT.parent / "shared" / "data").is_dir():
    os.environ["DATA_ROOT"] = str((PROJECT_ROOT.parent / "shared" / "data").resolve())


@pytest.fixture(scope="session")
def shared_data_root() -> Path:
    root = data_root()
    if not (root / "medmnist").is_dir():
        pytest.fail(f"data root {root} has no medmnist/ folder: set DATA_ROOT (CI uses ../shared/data)")
    return root


@pytest.fixture(scope="session")
def metric_fixtures() -> Path:
    path = fixtures_root() / "metrics"
    if not (path / "expected.json").is_file():
        pytest.fail(f"metric fixtures not found at {path}: set FIXTURES_ROOT or DATA_ROOT")
    return path


@pytest.fixture(scope="session")
def similarity_fixtures() -> Path:
    path = fixtures_root() / "similarity"
    if not (path / "similarity_expected.json").is_file():
        pytest.fail(f"similarity fixtures not found at {path}: set FIXTURES_ROOT or DATA_ROOT")
    return path

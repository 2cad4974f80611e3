"""Shared test set-up: offline, a private cache folder, the tiny profile."""

from __future__ import annotations

import os

# Nothing in the test suite may reach a model hub: CI sets these too.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VADNB_PROFILE", "tiny")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# pyproject's per-test deadline is for unit tests; a papermill test runs a whole notebook
NOTEBOOK_TIMEOUT_S = 1200


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """One cache folder for the whole session, so tiny models are built once.

    Set VADNB_TEST_CACHE to reuse a folder across runs (faster local iteration).
    """
    folder = os.environ.get("VADNB_TEST_CACHE") or str(tmp_path_factory.mktemp("vadnb-cache"))
    os.environ["VADNB_CACHE"] = folder
    return Path(folder)


@pytest.fixture
def fresh_cache(tmp_path):
    """A Cache in an empty folder, for tests that count hits and misses."""
    from vadnb.cache import Cache

    return Cache(tmp_path / "cache")


def pytest_collection_modifyitems(config, items):
    import torch

    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU: run `pytest -m needs_gpu` on a GPU machine")
    offline = pytest.mark.skip(reason="needs the Hugging Face hub: unset HF_HUB_OFFLINE and run "
                                      "`pytest -m needs_hub` on a machine with internet")
    hub_off = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
    for item in items:
        if "notebook" in item.keywords and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(NOTEBOOK_TIMEOUT_S))
        if "needs_gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "needs_hub" in item.keywords and hub_off:
            item.add_marker(offline)


def run_notebook(name: str, out_dir: Path, **parameters):
    """Execute ``notebooks/<name>.ipynb`` headless with papermill, as CI and the main job do.

    ``OUTPUT_DIR`` is pointed at ``out_dir``; other ``parameters`` override the notebook's
    parameters cell. Every cell has the main job's deadline (``run_notebooks.execute``), so a
    hang fails naming the notebook and cell. Returns the executed notebook (nbformat node) for
    inspection, after checking what a student sees (``notebook_audit.check_clean``).
    """
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from run_notebooks import execute

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"OUTPUT_DIR": str(out_dir), **parameters}
    executed = execute(REPO / "notebooks" / f"{name}.ipynb", out_dir / f"{name}.executed.ipynb",
                       params, REPO / "notebooks")
    from notebook_audit import check_clean

    check_clean(executed, name)  # no stderr, few progress bars, every say() rendered
    return executed

"""scripts/gpu_check.py: the parts that run without a GPU (arguments, configs, the run path
at tiny sizes). The full-size run needs a CUDA card and has not been run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from vadnb.models import profiles

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_arguments_and_roles(gpu_check):
    args = gpu_check.parse_args(["--profile", "paper", "--roles", "vlm", "llm", "--dry-run"])
    assert args.profile == "paper" and args.roles == ["vlm", "llm"] and args.dry_run
    assert [r for r, _ in gpu_check.roles_of("colab", None)] == list(profiles.MODELS["colab"])
    with pytest.raises(SystemExit, match="unknown roles"):
        gpu_check.roles_of("colab", ["painter"])
    # every role of both real profiles has a builder and a workload
    for profile in ("colab", "paper"):
        for role, model_id in gpu_check.roles_of(profile, None):
            assert role in gpu_check.WORKLOADS
            assert (model_id in gpu_check.HF_BUILDERS or model_id.endswith(":openai")
                    or model_id == "imagebind_huge" or role == "text_embedder"), model_id


def test_dry_run_configs_have_the_real_parameter_counts(gpu_check):
    """The full-size configs, counted on the meta device, match the profile tables."""
    for profile, roles in (("paper", ["llm", "vlm", "vlm-3b"]), ("colab", ["llm", "captioner"])):
        rows = gpu_check.main(["--dry-run", "--profile", profile, "--roles", *roles])
        assert [r["role"] for r in rows] == roles
        for row in rows:
            table = profiles.model_spec(row["role"], profile).params_b
            assert row["params_b"] == pytest.approx(table, rel=0.03), row


def test_the_run_path_at_tiny_sizes_on_a_cpu(gpu_check, tmp_path):
    rows = gpu_check.main(["--small", "--device", "cpu", "--repeats", "1", "--roles", "llm",
                           "vlm", "captioner", "--json", str(tmp_path / "rows.json")])
    assert [r["role"] for r in rows] == ["llm", "vlm", "captioner"]
    assert all(r["dtype"] == "float32" and r["s_per_call"] > 0 for r in rows)
    assert (tmp_path / "rows.json").exists()
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        if not __import__("torch").cuda.is_available():
            gpu_check.main(["--roles", "llm"])
        else:
            raise SystemExit("no CUDA GPU (skipped: a GPU is present)")

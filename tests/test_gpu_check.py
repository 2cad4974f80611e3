"""scripts/gpu_check.py: the parts that run without a GPU (the plan, configs, the whole run
path at tiny sizes through vadnb's own loading, the report). The full-size run needs a CUDA
card and has not been run (issue 24: prepared, labelled needs-GPU)."""

from __future__ import annotations

import importlib.util
import json
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
    assert args.json == Path("gpu_check.json")  # always writes its report
    assert [r for r, _ in gpu_check.roles_of("colab", None)] == list(profiles.MODELS["colab"])
    with pytest.raises(SystemExit, match="unknown roles"):
        gpu_check.roles_of("colab", ["painter"])
    for profile in ("colab", "paper"):
        for role, model_id in gpu_check.roles_of(profile, None):
            assert role in gpu_check.WORKLOADS
            assert (model_id in gpu_check.HF_BUILDERS or model_id.endswith(":openai")
                    or model_id == "imagebind_huge" or role == "text_embedder"), model_id


def test_workloads_are_the_methods_real_ones(gpu_check):
    """VERA: 8 frames of 448x448 and 1024 new tokens; AnyAnomaly: one 856x480 frame
    (its role's cap); LAVAD: 8 summaries, prompt and summary filling its 512-token context. Qwen's grid gives the real
    image-token counts."""
    from vadnb import vera
    from vadnb.models.hf import ROLE_MAX_PIXELS

    work = gpu_check.WORKLOADS
    from vadnb import lavad

    cfg = lavad.Config()
    assert work["llm"]["prompt"] + work["llm"]["new_tokens"] == cfg.llm_context_tokens
    assert work["llm"]["batch"] == cfg.llm_batch_size
    assert work["vlm"]["images"] == vera.Config().train_frames == 8
    assert work["vlm"]["new_tokens"] == vera.Config().max_new_tokens == 1024
    w, h = work["vlm-3b"]["image"]
    assert w * h <= ROLE_MAX_PIXELS["vlm-3b"] and w / h == pytest.approx(856 / 480, rel=0.01)
    assert gpu_check.qwen_grid(448, 448) == (32, 32)  # 256 tokens after the 2x2 merge
    assert gpu_check.qwen_grid(854, 480) == (34, 60)  # 510 tokens


def test_plan_for_a_t4_without_a_gpu(gpu_check, tmp_path):
    """The dry run answers "what would run in which dtype on a T4" on a CPU, and writes it."""
    rows = gpu_check.plan("colab", gpu_check.roles_of("colab", None), "cuda", (7, 5), 15.8)
    dtypes = {r["role"]: r["dtype"] for r in rows}
    assert "bfloat16" not in dtypes.values()  # emulated on a T4
    assert dtypes["llm"] == "float32" and dtypes["vlm-3b"] == "float16"
    llm = next(r for r in rows if r["role"] == "llm")
    assert llm["weights_gb"] == pytest.approx(3.1 * 4)
    out = tmp_path / "plan.json"
    report = gpu_check.main(["--dry-run", "--capability", "7.5", "--memory-gb", "15.8",
                             "--roles", "llm", "captioner", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert [r["dtype"] for r in report["rows"]] == ["float32", "float16"]
    for row in report["rows"]:  # the full-size configs have the table's parameter counts
        table = profiles.model_spec(row["role"], "colab").params_b
        assert row["params_b"] == pytest.approx(table, rel=0.03), row


def test_paper_configs_have_the_real_parameter_counts(gpu_check, tmp_path):
    report = gpu_check.main(["--dry-run", "--profile", "paper", "--roles", "llm", "vlm",
                             "vlm-3b", "--json", str(tmp_path / "p.json")])
    for row in report["rows"]:
        table = profiles.model_spec(row["role"], "paper").params_b
        assert row["params_b"] == pytest.approx(table, rel=0.03), row


def test_verdict_names_what_does_not_fit_or_is_not_finite(gpu_check):
    rows = [{"role": "llm", "peak_gb": 14.1, "finite": True},
            {"role": "vlm", "peak_gb": 16.2, "finite": False},
            {"role": "clip", "error": "OutOfMemoryError: ..."}]
    v = gpu_check.verdict(rows, 15.8)
    assert v == {"fits": False, "too_big": ["vlm"], "finite": False, "not_finite": ["vlm"],
                 "failed": ["clip"]}
    assert gpu_check.verdict(rows[:1], 15.8)["fits"] is True


def test_finite_check_catches_inf_and_nan(gpu_check):
    import torch

    assert gpu_check.all_finite([torch.ones(3), torch.zeros(2, dtype=torch.float16)])
    assert not gpu_check.all_finite([torch.tensor([1.0, float("nan")])])
    assert not gpu_check.all_finite([torch.tensor([65504.0], dtype=torch.float16) * 2])


def test_the_run_path_at_tiny_sizes_on_a_cpu(gpu_check, tmp_path):
    """Random weights saved, loaded back through vadnb's from_pretrained path (and
    ImageBind's meta build), run, checked, reported."""
    out = tmp_path / "rows.json"
    report = gpu_check.main(["--small", "--device", "cpu", "--roles", "llm", "vlm", "vlm-3b",
                             "captioner", "embedder", "--json", str(out),
                             "--work-dir", str(tmp_path / "w")])
    rows = report["rows"]
    assert [r["role"] for r in rows] == ["llm", "vlm", "vlm-3b", "captioner", "embedder"]
    assert not [r for r in rows if r.get("error")], rows
    assert all(r["dtype"] == "float32" and r["s_per_call"] > 0 and r["finite"] for r in rows)
    assert all(r["load_s"] >= 0 and "implementation" in r["attention"] for r in rows)
    assert report["verdict"]["finite"] and report["verdict"]["fits"]
    assert report["card"]["versions"]["torch"] and report["card"]["gpu"] == "cpu"
    assert json.loads(out.read_text())["rows"][0]["role"] == "llm"
    assert not any((tmp_path / "w").iterdir())  # scratch weights removed after their roles
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        if not __import__("torch").cuda.is_available():
            gpu_check.main(["--roles", "llm"])
        else:
            raise SystemExit("no CUDA GPU (skipped: a GPU is present)")

"""vadnb.setup(): the first call of every notebook; and the packaging that installs it."""

import re
from pathlib import Path

import pytest

import vadnb
from vadnb.models import profiles

REPO = Path(__file__).resolve().parents[1]


def test_setup_prints_device_profile_versions_and_cache(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VADNB_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("VADNB_PROFILE", "auto")  # the auto choice too says it on the one line
    env = vadnb.setup("tiny")
    out = capsys.readouterr().out
    assert env.profile == "tiny" and env.meaningless
    assert out.count("\n") == 1, f"setup() prints one line, got:\n{out}"
    assert out.startswith(f"vadnb: {env.device}")
    assert "profile tiny (random-init models: scores are meaningless)" in out
    assert re.search(r"torch \d+\.\d+", out) and f"{env.threads} thread" in out
    assert f"cache {tmp_path / 'c'}" in out and (tmp_path / "c").is_dir()
    report = env.report()  # the details setup() no longer prints
    assert f"device : {env.device}" in report and "transformers" in report
    assert f"cache  : {tmp_path / 'c'}" in report


def test_profile_from_environment_and_auto_without_gpu(monkeypatch, capsys):
    monkeypatch.setenv("VADNB_PROFILE", "paper")
    assert profiles.resolve_profile() == "paper"
    monkeypatch.setenv("VADNB_PROFILE", "auto")
    import torch

    if not torch.cuda.is_available():
        assert profiles.resolve_profile() == "tiny"
        assert "profile auto -> tiny: no CUDA GPU" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        profiles.resolve_profile("huge")


def test_conda_binder_and_scripts_install_the_same_dependencies():
    """One list of dependencies (pyproject.toml); every installer points at it."""
    assert '-e ".[dev]"' in (REPO / "environment.yml").read_text()
    assert 'pip install --no-cache-dir -e ".[dev]"' in (REPO / "binder" / "postBuild").read_text()
    assert 'pip install -q -e ".[dev]"' in (REPO / "scripts" / "bootstrap.sh").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci and "HF_HUB_OFFLINE=1" in ci and "TRANSFORMERS_OFFLINE=1" in ci
    readme = (REPO / "README.md").read_text()
    assert "bash scripts/run.sh" in readme and "bash scripts/test.sh" in readme


def test_setup_prints_each_roles_dtype_on_a_t4(capsys, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import torch

    monkeypatch.setenv("VADNB_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a, **k: SimpleNamespace(total_memory=int(15.8e9)))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    env = vadnb.setup("colab")
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith("vadnb: cuda (Tesla T4) · profile colab")
    out = env.report()
    assert "device : cuda (Tesla T4)" in out
    assert env.dtypes["llm"] == "float32" and env.dtypes["captioner"] == "float16"
    lines = {line.split()[2]: line for line in out.splitlines() if line.startswith("dtype  :")}
    assert set(lines) == set(profiles.MODELS["colab"])
    assert "float32" in lines["llm"] and "overflows in fp16" in lines["llm"]
    assert "float16" in lines["vlm"] and "bfloat16" not in out and "float16" in lines["clip"]


def test_setup_sizes_the_thread_pool_to_the_available_cores(capsys, tmp_path, monkeypatch):
    import torch

    from vadnb import environment

    monkeypatch.setenv("VADNB_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("VADNB_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(environment, "available_cores", lambda: 3)
        env = vadnb.setup("tiny")
        assert env.threads == 3 and torch.get_num_threads() == 3
        assert "3 threads" in capsys.readouterr().out
        assert "threads: torch uses 3 (one per available core)" in env.report()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert vadnb.setup("tiny", quiet=True).threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        monkeypatch.undo()
    assert 1 <= environment.available_cores() <= (__import__("os").cpu_count() or 1)

def test_setup_silences_known_noise_once_and_says_so(capsys, tmp_path, monkeypatch):
    import logging

    from transformers.utils import logging as hf_logging

    from vadnb.environment import silence_known_noise

    monkeypatch.setenv("VADNB_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("OPENCV_FFMPEG_LOGLEVEL", raising=False)
    monkeypatch.delenv("VADNB_VERBOSE", raising=False)
    out = vadnb.setup("tiny").report()
    assert out.count("quiet  : silenced") == 1 and "VADNB_VERBOSE=1" in out
    import os

    assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "8"  # FFmpeg: fatal errors only
    assert hf_logging.get_verbosity() == hf_logging.ERROR
    import huggingface_hub.utils as hub_utils

    assert not hub_utils.are_progress_bars_disabled()  # download bars stay (issue 24)
    assert not hf_logging.is_progress_bar_enabled()  # "Loading weights" from disk goes
    assert logging.getLogger(
        "ray._private.authentication.authentication_token_setup").level == logging.ERROR
    monkeypatch.setenv("VADNB_VERBOSE", "1")
    assert silence_known_noise() == []
    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_warning()


def test_setup_keeps_the_hub_download_bars_on(tmp_path, monkeypatch):
    """A 15 GB download must show its progress: setup() quiets logs and transformers' bars
    for reading a checkpoint from disk, never huggingface_hub's download bars."""
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv("VADNB_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("VADNB_VERBOSE", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    hf_logging.enable_progress_bar()
    vadnb.setup("tiny", quiet=True)
    assert not hub_utils.are_progress_bars_disabled()
    hf_logging.enable_progress_bar()


def test_real_profile_on_a_small_cpu_machine_is_refused(tmp_path, monkeypatch):
    """PROFILE="colab" on a Colab CPU runtime (12.7 GB) would load ~15 GB of fp32 weights
    and kill the kernel: setup() refuses first, naming the model and what to do."""
    import torch

    from vadnb import environment

    monkeypatch.setenv("VADNB_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(environment, "host_memory_gb", lambda: 12.7)
    with pytest.raises(environment.ProfileNeedsGPUError,
                       match=r"'colab' needs a CUDA GPU.*Qwen/Qwen2.5-VL-3B-Instruct.*~15 GB.*"
                             r"12.7 GB(?s:.*)T4 GPU"):
        vadnb.setup("colab", quiet=True)
    with pytest.raises(environment.ProfileNeedsGPUError, match="Llama-2-13b"):
        vadnb.setup("paper", quiet=True)
    assert vadnb.setup("cpu", quiet=True).profile == "cpu"  # small models: allowed
    # a workstation with the memory for fp32 weights may run it (slowly)
    environment.check_profile_fits("colab", "cpu", ram_gb=64.0)
    environment.check_profile_fits("colab", "cuda", ram_gb=12.7)  # a GPU: weights go there


def test_downloads_per_notebook_come_from_the_registry_and_profile():
    from notebook_audit import download_note

    from vadnb import environment

    assert environment.notebook_roles("20") == ["captioner", "embedder", "llm"]  # lavad.run
    rows = environment.downloads(environment.notebook_roles("20"), "colab")
    assert [r["model"] for r in rows] == ["Salesforce/blip2-opt-2.7b", "imagebind_huge",
                                          "Qwen/Qwen2.5-3B-Instruct"]
    assert sum(r["download_gb"] for r in rows) == pytest.approx(
        sum(profiles.MODELS["colab"][r].download_gb for r in ("captioner", "embedder", "llm")))
    assert "CC BY-NC-SA 4.0" in rows[1]["licence"]
    # vlm and vlm-3b are one model in colab: counted once
    every = environment.downloads(["vlm", "vlm-3b"], "colab")
    assert len(every) == 1 and every[0]["roles"] == ["vlm", "vlm-3b"]
    assert environment.downloads(environment.notebook_roles("20"), "tiny") == []
    paper = download_note("30", "paper")
    assert "meta-llama/Llama-2-13b-chat-hf" in paper and "gated" in paper
    assert download_note("10").startswith("This notebook downloads no model")
    with pytest.raises(ValueError, match="unknown notebook '99'"):
        environment.notebook_roles("99")


def test_keep_on_drive_points_cache_and_hub_there_and_says_the_space(tmp_path, monkeypatch,
                                                                     capsys):
    from vadnb import environment

    for name in ("VADNB_CACHE", "HF_HOME"):  # restored after the test
        monkeypatch.setenv(name, str(tmp_path / "before"))
    monkeypatch.delenv("VADNB_PROFILE", raising=False)
    root = tmp_path / "MyDrive" / "vadnb"
    got = environment.keep_on_drive("20", root=str(root), mount=False)
    assert got == {"VADNB_CACHE": str(root / "cache"), "HF_HOME": str(root / "huggingface")}
    import os

    assert os.environ["VADNB_CACHE"] == str(root / "cache") and (root / "huggingface").is_dir()
    out = capsys.readouterr().out
    need = sum(r["download_gb"] for r in environment.downloads(["captioner", "embedder", "llm"]))
    assert f"this notebook ~{need:.1f} GB" in out and "profile colab" in out
    assert "Drive has" in out and "GB free" in out

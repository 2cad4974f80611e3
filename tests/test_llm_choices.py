"""The LLM role's ``choices=`` option: each allowed reply scored by the model's own
likelihood, so every reply is one of LAVAD's 11 scores (or VERA's 0/1)."""

from __future__ import annotations

import math

import pytest
import torch

from vadnb import models
from vadnb.models.base import LAVAD_SCORE_CHOICES, VERA_LABEL_CHOICES, ChosenReply


def _one_logprob(llm, messages, reply: str) -> float:
    """log P(reply, then end of turn | prompt): one unpadded forward pass, by hand."""
    prompt = llm.tokenizer(llm.prompt(messages), add_special_tokens=False)["input_ids"]
    option = llm.tokenizer(reply, add_special_tokens=False)["input_ids"] + [
        llm.tokenizer.eos_token_id]
    ids = torch.tensor([prompt + option])
    with torch.inference_mode():
        logits = llm.model(input_ids=ids).logits.float()[0]
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(option))


def test_choices_are_the_models_own_likelihoods_whatever_the_padding():
    from vadnb import lavad

    llm = models.load("llm", profile="tiny")
    msgs = [lavad.score_messages("A man runs across the lawn."),
            lavad.score_messages("Two people walk slowly along the path at dusk.")]
    replies = llm.batch(msgs, choices=LAVAD_SCORE_CHOICES)
    for m, reply in zip(msgs, replies):
        assert isinstance(reply, ChosenReply) and str(reply) in LAVAD_SCORE_CHOICES
        assert list(reply.logprobs) == list(LAVAD_SCORE_CHOICES)
        assert str(reply) == max(reply.logprobs, key=reply.logprobs.get)
        for option in ("[0]", "[0.7]", "[1.0]"):  # options of 3, 5 and 5 characters
            assert reply.logprobs[option] == pytest.approx(_one_logprob(llm, m, option),
                                                          abs=1e-4)
    with pytest.raises(ValueError, match="distinct non-empty"):
        llm.batch(msgs[:1], choices=["0", "0"])
    llm.release()


@pytest.mark.slow
def test_the_real_smollm2_answers_every_prompt_with_an_allowed_value():
    """The cpu profile's real SmolLM2-135M (fetched from PyPI, no hub): with choices=, 100 %
    of LAVAD's score replies parse, and VERA's labels are 0 or 1."""
    from vadnb import lavad, stages

    llm = models.load("llm", profile="cpu")
    try:
        summaries = ["A man runs across the lawn and pushes another man to the ground.",
                     "People walk along the campus path; nothing unusual happens.",
                     "A cyclist rides on the footpath between pedestrians.",
                     "Someone leaves a bag on a bench and walks away quickly."]
        msgs = [lavad.score_messages(s) for s in summaries]
        replies = llm.batch(msgs, choices=LAVAD_SCORE_CHOICES)
        parsed = [stages.parse_bracket_score(str(r)) for r in replies]
        assert None not in parsed and len(parsed) == len(summaries)  # 100 % parse
        assert all(math.isfinite(v) for r in replies for v in r.logprobs.values())
        label = llm([{"role": "user", "content": "Is a man pushing another man to the ground "
                      "an anomaly? Answer 1 for yes, 0 for no."}], choices=VERA_LABEL_CHOICES)
        assert str(label) in ("0", "1") and set(label.logprobs) == {"0", "1"}
        free = llm.batch(msgs, max_new_tokens=12)  # the default: free text, then the parser
        assert len(free) == len(msgs) and not isinstance(free[0], ChosenReply)
    finally:
        llm.release()


def test_a_served_llm_says_it_cannot_score_choices():
    llm = models.load("llm", model="openai:m@http://127.0.0.1:9/v1")
    with pytest.raises(NotImplementedError, match="load the LLM locally"):
        llm.batch(["hi"], choices=VERA_LABEL_CHOICES)

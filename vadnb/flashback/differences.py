"""Every way vadnb's Flashback departs from the authors' research code, or chooses where the
paper is ambiguous (FLASHBACK.md §4), rendered in notebook 75."""

from __future__ import annotations

from ..stages import Difference

#: Reference: Haawron/agent-based-vad @311d5a9 (the authors' pre-publication research code,
#: no licence: read, never copied), and the paper's abstract (arXiv 2505.15205).
DIFFERENCES: list[Difference] = [
    Difference(
        what="Anomalous flags: the research code marks a retrieved caption anomalous when "
             "its index is > the number of normal captions, so the first anomalous caption "
             "counts as normal; vadnb uses >= (every anomalous caption counts).",
        why="An off-by-one, not a choice: one caption of the memory changes sides.",
        effect="Only segments whose top k holds that one caption; tests/test_flashback.py "
               "shows the two differ on such a segment."),
    Difference(
        what="Frame rate: the research code converts 1 s / 0.5 s to 30 / 15 frames whatever "
             "the video; vadnb uses the video's real rate (round(1.0 fps), round(0.5 fps)).",
        why="A segment measured in seconds means the same at any rate (XD-Violence is "
            "mostly 24 fps, the campus clips 10 fps).",
        effect="Identical on 30 fps video; not measured elsewhere.", flag="frame_rate=30"),
    Difference(
        what="Tail frames: after the last whole segment the research code scores frames 0; "
             "vadnb gives them the last segment's score. A video shorter than one segment "
             "is one segment of all its frames (the code scores none).",
        why="A 0 is a claim of normality the method never made (FLASHBACK.md §4.6).",
        effect="At most segment - hop frames at each video's end; not measured.",
        flag='tail="zero"'),
    Difference(
        what="Repulsive prompting (a named paper component whose procedure was not "
             "retrievable): vadnb asks for paired normal/anomalous captions, as the code "
             "does, and offers the code's label prefixes ('[normal] ...', '[Anomalous]: ...') "
             "as `text_prefix=True`; the default embeds the raw caption, the code's default.",
        why="Defaults compute what the code computes; the prefixes are the code-backed "
            "reading of 'separating the two caption spaces' (FLASHBACK.md §4.1).",
        effect="The code's own dev log notes a large UCF-Crime gain with prefixes (its "
               "configuration unrecorded); not measured here.", flag="text_prefix=True"),
    Difference(
        what="Anomaly scaling alpha (`anomalous_scale`) multiplies the anomalous caption "
             "vectors before top-k, as the code; its value in the paper is unknown, the "
             "code's default is 1.0 (0.7 and 0.8 in early commits).",
        why="The paper's 'scaled anomaly penalization' value was not retrievable; tune it "
            "on a non-target dataset, never the test set (FLASHBACK.md §4.2).",
        effect="None at the default 1.0."),
    Difference(
        what="Softmax scale: ImageBind's text vectors carry its learned logit scale in the code "
             "(tau = 1) and the segment vector is a mean of unit clip vectors, not re-normalised; "
             "vadnb's embedder returns unit vectors on both sides and multiplies the similarities "
             "by `logit_scale` (100, CLIP's trained value and the code's tau for InternVideo2/PE).",
        why="The suite's embedder normalises every output; the learned ImageBind scale "
            "could not be read here (FLASHBACK.md §4.3 says the two forms agree when the "
            "checkpoint's scale is used).",
        effect="Changes the softmax's sharpness, not the top-k captions; not measured."),
    Difference(
        what="Seeds and temperature: the code sends the same prompt with an OpenAI `seed` "
             "per call; vadnb writes 'Seed: <n>' into the user message and samples at "
             "temperature 1.0 (the API's default), because the runtime keys a call by "
             "what is sent and an identical request is asked once.",
        why="Distinct calls must be distinct requests; the cache then makes every reply "
            "reproducible on a re-run.",
        effect="Different captions than the code would get; not measured."),
    Difference(
        what="Validation and retries: the code relies on OpenAI structured outputs; vadnb "
             "parses any reply (code fences allowed), counts malformed replies and incomplete "
             "items, asks a malformed call again showing its error (`max_retries`), and stops "
             "with an error naming the counts when no call succeeded.",
        why="Local and served models have no guaranteed JSON mode; a failure must be "
            "visible, never an empty or silently smaller memory.",
        effect="None on a well-formed reply."),
    Difference(
        what="De-duplication: none in the code; vadnb drops exact repeats within each class "
             "(first kept) and records the counts in the memory file.",
        why="A caption repeated n times takes up to n of the top-k slots and weighs n "
            "times in the softmax (FLASHBACK.md §4.4).",
        effect="None when the LLM never repeats itself; counts in the memory's `counts`."),
    Difference(
        what="Memory size: the code's run is 1000 calls x 100 pairs with GPT-4o; vadnb's "
             "default is 8 calls x 25 pairs (a T4 writes it in minutes), the paper's scale "
             "is `PAPER_MEMORY`; the tiny profile uses a small hand-written memory.",
        why="A lesson that waits hours for its memory teaches nothing; the scale is one "
            "setting away.", effect="Not measured (no GPU here).",
        flag="**flashback.PAPER_MEMORY"),
    Difference(
        what="Models: GPT-4o writes the memory and ImageBind huge retrieves in the paper; "
             "vadnb uses the profile's llm (Qwen2.5-3B-Instruct on colab; any served model) "
             "and embedder (ImageBind huge), one centre crop per frame instead of the code's "
             "short-side-256 resize.",
        why="GPT-4o is a paid API; the suite's roles run on a T4.",
        effect="Not measured here (no GPU)."),
    Difference(
        what="Frame-to-clip pairing: kept as the code ({k, k+8} of the 16 sampled frames), by "
             "sending the frames in that order to the embedder, which pairs neighbours; "
             "`pairing='consecutive'` is the alternative to ablate.",
        why="Parity with the code (FLASHBACK.md §4.7).", effect="None (identical clips)."),
]

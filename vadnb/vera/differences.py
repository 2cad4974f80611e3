"""Every way vadnb's VERA departs from the official code (notebook 70 renders the list)."""

from __future__ import annotations

from ..stages import Difference


#: Every way vadnb's VERA departs from the official code (vera-framework/VERA:
#: training.py, generate_initial_score.py, compute_auc.py, the two instruction files).
DIFFERENCES: list[Difference] = [
    Difference(
        what="Choosing the questions: the official training writes the validation accuracy "
             "and the current questions to a text file every 100 steps and a person picks a "
             "set; vadnb keeps the set with the best validation accuracy (earliest on ties), "
             "scoring every `validate_every` steps, and refuses test videos.",
        why="A choice made by looking at results is easy to make on the wrong split; "
            "automatic choice on validation keeps the test score honest.",
        effect="None on the loop itself; removes a manual step."),
    Difference(
        what="Reading the learner's label: the official code reads 0 when a '0' appears "
             "anywhere after the last 'Output' and 1 otherwise, so an unreadable reply counts "
             "as an anomaly; vadnb reads the first 0/1 after the last 'Output' (then a "
             "standalone 0/1 that is not list numbering, then 'there is (no) anomaly'), and "
             "an unreadable reply is a wrong prediction in training and validation and is "
             "filled from its neighbours at inference (counted in both cases).",
        why="Counting an unreadable reply as 'anomaly' hides a model that cannot follow "
            "the format and inflates recall.",
        effect="None for replies that end with 'Output: 0/1'; not measured otherwise."),
    Difference(
        what="Reading the optimizer's questions: the official code keeps the raw text after "
             "'New Prompt Questions' (its first 5 lines, verbatim, blank lines and code "
             "fences included) and keeps the old questions only when the heading is missing; "
             "vadnb extracts the items (numbered, bullets, 'Q1:', inline lists), drops "
             "gibberish and duplicates, keeps at most `max_questions`, and keeps the old set "
             "(counted) when no question is found.",
        why="Raw lines can carry reasoning or formatting into the next prompt; an "
            "unreadable reply should not replace working questions.",
        effect="Identical for a clean numbered list; not measured otherwise."),
    Difference(
        what="Prompts: vadnb's own wording with the official structure (learner: role, task, "
             "questions, input, strict format ending in 'Output:'; optimizer: role and goal, "
             "inputs, model description, current questions, predictions, targets, keep-or-"
             "improve, questions based on features of the input videos, step-by-step "
             "reasoning, at most five questions). Frames travel as images through the "
             "backend's chat template instead of 'Frame1: <image>' placeholders.",
        why="The code is written fresh (no copied prose); image placement is the "
            "backend's job for every VLM family.",
        effect="Not measured; wording changes replies of a real VLM somewhat."),
    Difference(
        what="The optimizer can also be shown each learner reply (`show_replies=True`); "
             "off by default, as in the official code, where it sees only predictions and "
             "targets.",
        why="An option to study how much the reasons help the optimizer.",
        effect="None by default.", flag="show_replies"),
    Difference(
        what="Training frames: the official code takes frames floor(i * n / 8) (the start of "
             "each eighth of the video); vadnb takes the middle of each eighth.",
        why="Symmetric sampling: the official one always shows frame 0 and never the last "
            "eighth.",
        effect="Frames shifted by n/16; not measured."),
    Difference(
        what="Inference windows: the official code uses +/-150 frames (30 fps hard-coded) and "
             "8 frames from arange(start, end, (end - start) / 8) (left-aligned, end "
             "excluded); vadnb uses +/- window_s * fps / 2 at the video's own rate and 8 "
             "frames evenly from the first to the last frame of the window "
             "(`stages.window_indices`, shared with LAVAD).",
        why="A window measured in seconds means the same at any frame rate (XD-Violence is "
            "24 fps, the campus clips 10 fps).",
        effect="On 30 fps video the same span, frames up to 1/8 window apart; not measured."),
    Difference(
        what="Retrieval ensemble on short videos: the official top_n = int(0.15 * n) is 0 "
             "below 7 segments (112 frames), and its argsort[:, -0:] then averages over every "
             "segment; vadnb uses at least 1 neighbour (the segment itself). Ties between "
             "equal similarities are broken by index (stable) in vadnb, arbitrarily in the "
             "official argsort.",
        why="Averaging a whole short video is an accident of slicing, not the method.",
        effect="Only videos under 112 frames; identical above (parity test)."),
    Difference(
        what="Smoothing kernel: the official Gaussian is sampled at linspace(-8, 7, 15) "
             "(off-centre, spacing 15/14) and convolved with zero padding, which pulls the "
             "first and last ~7 segments of every video toward 0 (and misaligns videos "
             "shorter than 15 segments); vadnb samples it at -7..7 and pads by reflection.",
        why="An off-centre kernel shifts scores in time, and zero padding lowers the scores "
            "at both ends of every video.",
        effect="Segment scores near the ends differ by up to ~half. On short clips whose "
               "anomaly sits mid-clip, zero padding acts like a position prior and raises "
               "AUC; notebook 70's perfect-perception table measures it on the campus clips.",
        flag='smoothing="paper"'),
    Difference(
        what="Rounding: the official code rounds each smoothed segment score to one decimal "
             "before expanding to frames; vadnb keeps full precision.",
        why="Rounding creates ties (11 values), which changes AUC and AP.",
        effect="Small, either way; measured in notebook 70's perfect-perception table.",
        flag="round_decimals=1"),
    Difference(
        what="Position prior: the official UCF-Crime evaluation always multiplies frame "
             "scores by exp(-0.5((t - c)/c)^2), c = floor(n/2); vadnb has it off by default.",
        why="It is knowledge about the UCF-Crime test set (anomalies mid-video), not part "
            "of the method.",
        effect="Raises UCF-Crime AUC in the paper; lowers it on videos whose anomaly is "
               "near an end.", flag="position_prior=True"),
    Difference(
        what="Segment embeddings: the official evaluation reads precomputed per-segment "
             "vision features (vision_features/<video>.npy; their extractor is not in the "
             "repository); vadnb embeds each window's frames with the embedder's video "
             "encoder (ImageBind in the real profiles). `from_initial_scores` accepts the "
             "released features.",
        why="The extractor is not public; ImageBind is the suite's video embedder.",
        effect="Unknown: the official features cannot be reproduced."),
    Difference(
        what="Models and frames: the paper uses InternVL2-8B (its own hub code, bf16, one "
             "448 px tile per frame, ImageNet normalisation); vadnb uses the profile's VLM "
             "(Qwen2.5-VL in the colab profile) with frames resized to `image_size` (448) "
             "and that model's own processor.",
        why="InternVL2's remote code does not run with the installed transformers; the "
            "newer official script uses Qwen2-VL.",
        effect="Not measured here (no GPU)."),
    Difference(
        what="Training schedule: the official code runs 10 epochs with a Lightning shuffle "
             "and validates every 100 steps; vadnb runs `steps` (or `epochs`) with a seeded "
             "shuffle per epoch, caches every step and resumes after an interruption.",
        why="Reproducible and resumable on a Colab session.",
        effect="Same loop; shorter by default (set steps/epochs for the paper's length)."),
    Difference(
        what="Starting questions: the official training starts from two generic questions "
             "(a suspicious person or object; unusual behaviour); vadnb starts from the five "
             "hand-written questions of data/vera_questions.json, or any set passed as "
             "`questions=`.",
        why="A start that names the common kinds of anomaly shortens the (expensive) "
            "loop on a small benchmark.",
        effect="Not measured; pass the official two to start where the paper started."),
    Difference(
        what="Token budget: 1024 new tokens and greedy decoding, as the official code; "
             "vadnb also counts replies cut at the budget apart from unreadable ones.",
        why="A cut reply loses its 'Output' line; counting it tells a small budget from a "
            "model that cannot follow the format.",
        effect="None on scores."),
]

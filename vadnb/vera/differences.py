"""Every way vadnb's VERA departs from the official code (vera-framework/VERA: training.py,
generate_initial_score.py, compute_auc.py, the two instruction files); notebook 70 renders it."""

from __future__ import annotations

from ..stages import Difference

#: (what, why, effect[, the Config settings that turn the difference on])
DIFFERENCES: list[Difference] = [Difference(*entry) for entry in [
    ("Choosing the questions: the official training writes the validation accuracy and the "
     "current questions to a text file every 100 steps and a person picks a set; vadnb keeps the "
     "set with the best validation accuracy (earliest on ties), scoring every `validate_every` "
     "steps, and refuses test videos.",
     "A choice made by looking at results is easy to make on the wrong split; automatic choice "
     "on validation keeps the test score honest.",
     "None on the loop itself; removes a manual step."),
    ("Reading the learner's label, as an option (`label_reading=\"tolerant\"`). The default "
     "reads as the official code, each rule where it is used: at inference the runnable "
     "Inference/generate_intial_score.py reads 1 only when the reply's last character is '1' (so "
     "'Output: 1.' and 'Output: [1]' read 0); training.py (training and validation) reads 0 when "
     "a '0' appears after the last 'Output' (anywhere in the reply if it has none) and 1 "
     "otherwise, so an unreadable reply counts as an anomaly. The option reads the first 0/1 "
     "after the last 'Output' (then a standalone 0/1 that is not list numbering, then 'there is "
     "(no) anomaly'); an unreadable reply is then a wrong prediction in training and validation "
     "and is filled from its neighbours at inference (counted in both cases).",
     "The official readings turn trailing punctuation into 'normal' at inference and an "
     "unreadable reply into 'anomaly' in training, which hides a model that cannot follow the "
     "format.",
     "None on the campus perfect-perception inputs (the oracle's replies end with 'Output:\\n0' "
     "or '1', which both readings read alike); with a real VLM, every reply not ending in '1' "
     "may differ.", 'label_reading="tolerant"'),
    ("Reading the optimizer's questions: the official code keeps the raw text after 'New Prompt "
     "Questions' (its first 5 lines, verbatim, blank lines and code fences included) and keeps "
     "the old questions only when the heading is missing; vadnb extracts the items (numbered, "
     "bullets, 'Q1:', inline lists), drops gibberish and duplicates, keeps at most "
     "`max_questions`, and keeps the old set (counted) when no question is found.",
     "Raw lines can carry reasoning or formatting into the next prompt; an unreadable reply "
     "should not replace working questions.",
     "Identical for a clean numbered list; not measured otherwise."),
    ("Prompts: vadnb's own wording with the official structure (learner: role, task, questions, "
     "input, strict format ending in 'Output:'; optimizer: role and goal, inputs, model "
     "description, current questions, predictions, targets, keep-or-improve, questions based on "
     "features of the input videos, step-by-step reasoning, at most five questions). Frames "
     "travel as images through the backend's chat template instead of 'Frame1: <image>' "
     "placeholders.",
     "The code is written fresh (no copied prose); image placement is the backend's job for "
     "every VLM family.", "Not measured; wording changes replies of a real VLM somewhat."),
    ("The optimizer can also be shown each learner reply (`show_replies=True`); off by default, "
     "as in the official code, where it sees only predictions and targets.",
     "An option to study how much the reasons help the optimizer.", "None by default.",
     "show_replies=True"),
    ("Training frames: the official code takes frames floor(i * n / 8) (the start of each eighth "
     "of the video); vadnb takes the middle of each eighth.",
     "Symmetric sampling: the official one always shows frame 0 and never the last eighth.",
     "Frames shifted by n/16; not measured."),
    ("Inference windows: the official code uses +/-150 frames (30 fps hard-coded) and 8 frames "
     "from arange(start, end, (end - start) / 8) (left-aligned, end excluded), frames resized to "
     "448 x 448 bicubic; vadnb uses the closed window +/- round(window_s * fps / 2) at the "
     "video's own rate (301 frames at 30 fps) and 8 frames at linspace(first, last, 8) rounded "
     "(`stages.window_frames_closed`; not LAVAD's half-open window), resized to 448 x 448 with "
     "area interpolation.",
     "A window measured in seconds means the same at any frame rate (XD-Violence is 24 fps, the "
     "campus clips 10 fps).",
     "On 30 fps video the same span, frames up to 1/8 window apart; not measured."),
    ("Retrieval ensemble on short videos: the official top_n = int(0.15 * n) is 0 below 7 "
     "segments (96 frames or fewer), and its argsort[:, -0:] then averages over every segment; "
     "vadnb uses at least 1 neighbour (the segment itself). Ties between equal similarities are "
     "broken by index (stable) in vadnb, arbitrarily in the official argsort.",
     "Averaging a whole short video is an accident of slicing, not the method.",
     "Only videos of 96 frames or fewer; identical above (parity test). VERA's XD-Violence AP "
     "script takes all segments when n <= 4 (`xd_violence_frame_scores` follows it)."),
    ("Step 3 as an option (`**VADNB_STEP3`): the default is the official kernel (taps at "
     "linspace(-8, 7, 15), sigma 10, normalised, zero-padded np.convolve(..., 'same')) and "
     "numpy's rounding to one decimal; vadnb's option samples the kernel at -7..7, pads by "
     "reflection and keeps full precision.",
     "The official kernel is off-centre (shifts scores in time) and zero padding pulls the first "
     "and last ~7 segments of every video toward 0; rounding to 11 values creates ties. The "
     "option removes both.",
     "Campus perfect perception (vadnb.vera.perfect_perception(load_campus(), image_size=32)): "
     "official default AUC 0.821 / AP 0.504; VADNB_STEP3 0.733 / 0.390; centred kernel rounded "
     "0.723 / 0.383; official kernel unrounded 0.818 / 0.488. On short clips whose anomaly sits "
     "mid-clip, zero padding acts like a position prior.",
     'smoothing="centred", round_decimals=None'),
    ("Position prior: the official AUC scripts (UCF-Crime and XD-Violence; not the XD AP script) "
     "always multiply frame scores by exp(-0.5((t - c)/c)^2), c = floor(n/2); vadnb has it off "
     "by default.",
     "It is knowledge about the UCF-Crime test set (anomalies mid-video), not part of the method.",
     "Raises UCF-Crime AUC in the paper; lowers it on videos whose anomaly is near an end. "
     "Campus perfect perception (vadnb.vera.perfect_perception(load_campus(), image_size=32)): "
     "with it (PAPER_STEP3) AUC 0.870 / AP 0.667, without (default) 0.821 / 0.504.",
     "position_prior=True"),
    ('Segment features as an option (`segment_features="window"`): the default is what the '
     "official README names, LAVAD's ImageBind clip feature of each segment (the first and last "
     "of 10 frames of LAVAD's 10 s window, 3 square crops, averaged; vadnb.lavad.video_clip); "
     "the option embeds the 8 frames the VLM saw (448 px) as one clip.",
     "The option compares exactly what the VLM judged; the default reproduces the released "
     "features' recipe.",
     "Campus perfect perception (vadnb.vera.perfect_perception(load_campus(), image_size=32)): "
     "default AUC 0.821 / AP 0.504, window features 0.832 / 0.510.", 'segment_features="window"'),
    ("Models and frames: the paper uses InternVL2-8B (its own hub code, bf16, one 448 px tile "
     "per frame, ImageNet normalisation); vadnb uses the profile's VLM (Qwen2.5-VL in the colab "
     "profile) with frames resized to `image_size` (448) and that model's own processor.",
     "InternVL2's remote code does not run with the installed transformers; the newer official "
     "script uses Qwen2-VL.", "Not measured here (no GPU)."),
    ("Training schedule: the official code runs 10 epochs with a Lightning shuffle and validates "
     "every 100 steps; vadnb runs `steps` (or `epochs`) with a seeded shuffle per epoch, caches "
     "every step and resumes after an interruption.",
     "Reproducible and resumable on a Colab session.",
     "Same loop; shorter by default (set steps/epochs for the paper's length)."),
    ("Starting questions: the official training starts from two generic questions (a suspicious "
     "person or object; unusual behaviour); vadnb starts from the five hand-written questions of "
     "data/vera_questions.json, or any set passed as `questions=`.",
     "A start that names the common kinds of anomaly shortens the (expensive) loop on a small "
     "benchmark.", "Not measured; pass the official two to start where the paper started."),
    ("Token budget: 1024 new tokens and greedy decoding, as the official code; vadnb also counts "
     "replies cut at the budget apart from unreadable ones.",
     "A cut reply loses its 'Output' line; counting it tells a small budget from a model that "
     "cannot follow the format.", "None on scores."),
]]

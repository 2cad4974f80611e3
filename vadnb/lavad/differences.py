"""Every way vadnb's LAVAD departs from the official code (lucazanella/lavad), with why and
the effect; notebooks 20, 30 and 40 render it (``stages.differences_markdown``). What is not
listed follows the official computation, and tests/test_lavad.py holds it against
transcriptions of it: window frames, caption index and cleaning, score parsing and
interpolation, the 2-frame / 3-crop video clip, the refinement weights, frame expansion."""

from __future__ import annotations

from .. import stages

#: (what, why, effect[, the flag that restores the paper's behaviour])
DIFFERENCES: list[stages.Difference] = [stages.Difference(*entry) for entry in [
    ("Only the centre frames (every 16th) are captioned; the official code captions every frame.",
     "The official code only ever reads the captions at frames idx % 16 == 0.",
     "None on the output (identical captions are used); 16x fewer captioner calls."),
    ("One captioner by default (the profile's); the paper pooled five BLIP-2 captioners for "
     "UCF-Crime and used flan-t5-xxl alone for XD-Violence.",
     "Five 4-12 B captioners do not fit a Colab T4 session.",
     "Not measured here (needs the real models): fewer, less varied captions in the caption "
     "index.", "captioner_models=PAPER_CAPTIONERS, or paper_config('ucf-crime' | 'xd-violence')"),
    ("Option: a captioner length cap (vadnb's earlier 30 new tokens). The default is the "
     "official one: the captioner generates with the model's own settings (BLIP-2: transformers' "
     "max_length 20, greedy), as the official generate() call with none.",
     "A longer cap lets a captioner finish a long caption.",
     "None on captions under 20 tokens (BLIP-2's are a short phrase). Campus perfect-perception "
     "inputs: AUC 0.790 / AP 0.579 either way (its captions are a few words; `python "
     "benchmarks/lavad_options.py`); not measured on real models.", "caption_max_new_tokens=30"),
    ("Greedy decoding (temperature 0) by default, so identical prompts are asked once; the "
     "official code samples (temperature 0.6, top_p 0.9) every position apart.",
     "A run is reproducible and a cached reply is the reply you would get again (REFERENCE.md's "
     "choice); the paper's sampling is one switch away.",
     "Campus perfect-perception inputs: AUC 0.790 / AP 0.579 either way (the oracle LLM ignores "
     "sampling; `python benchmarks/lavad_options.py`); with a real LLM the same summary gets "
     "different scores from run to run.",
     "llm_decoding='paper' (temperature 0.6, top_p 0.9, every position sampled)"),
    ("Option: a fixed summary budget (vadnb's earlier default, 160 new tokens). The default is "
     "the official one: the LLM's 512-token context minus the prompt (its chat template counted "
     "with the llm role's tokenizer; words for a backend without one).",
     "One budget for every prompt lets the summaries batch together (a per-prompt budget splits "
     "a batch into one call per prompt length); 160 tokens hold a few sentences.",
     "Campus perfect-perception inputs: AUC 0.790 / AP 0.579 with either budget (`python "
     "benchmarks/lavad_options.py`; the oracle's summaries are short); a reply longer than 160 "
     "tokens is cut and its last line may change.", "summary_max_new_tokens=160"),
    ("Prompts in our own words, sent as one user message (instruction, then the captions one per "
     "line); the official sends the instruction as the system message and the captions joined by "
     "a newline and a space.",
     "Not every chat template accepts a system message (several small models reject it); the "
     "wording is ours by policy. Structure and content are the paper's.", "Not measured.",
     "summary_prompt=, score_context=, score_format= (any text)"),
    ("The summary kept is the reply's last non-empty line; the official keeps the text after the "
     "last newline, which is empty when a reply ends with a newline (and adds a full stop after "
     "the summary in the score prompt).",
     "An empty summary carries no information and would be scored as such.",
     "None for replies that do not end with a newline; otherwise vadnb keeps the summary the "
     "official code loses."),
    ("The score reply gets a budget of score_max_new_tokens (48) new tokens; the official let it "
     "run to the end of a 512-token context. Replies cut at the budget are counted apart from "
     "unparseable ones.",
     "Bounded cost per call; the budget leaves room for a preamble before the bracket.",
     "None when the model answers within 48 tokens; extras['score_truncated'] says how often it "
     "did not.", "score_max_new_tokens"),
    ("Option (vadnb improvement): score_decoding='choices' asks which of the 11 allowed replies "
     "[0], [0.1], ..., [1.0] the LLM itself finds most likely (its log-probability of each, end "
     "of turn included) instead of parsing its free text. The default is the official free-text "
     "reply read by the parser.",
     "A small LLM often writes no readable bracket (SmolLM2-135M echoes the candidate list); "
     "with choices every reply is a score. Needs a locally loaded LLM (a served one raises "
     "NotImplementedError).",
     "Campus perfect-perception captions, SmolLM2-135M (cpu profile) summarising and scoring, 59 "
     "positions (stride 16, 64-token summaries): free text parses 0 of 59 (every position 0.5), "
     "choices 59 of 59, raw scores [0] or [1.0] only (raw AUC 0.512, refined AUC 0.279 / AP "
     "0.242; the oracle LLM: 0.790 / 0.579). `python benchmarks/lavad_cpu_llm.py "
     "--summary-tokens 64`. Every reply is now a score; whether the scores rank depends on the "
     "model.", "score_decoding='choices'"),
    ("The score parser also reads '[ 0.3 ]' and '[.5]' (the official regex does not) and skips "
     "values outside [0, 1] (the official keeps '[7]' as a score of 7).",
     "Scores stay in [0, 1]; a readable answer is not thrown away over a space.",
     "Fewer parse failures; no score outside [0, 1]."),
    ("When no score reply of a video parses, every position gets 0.5; the official np.interp "
     "fails on an empty list.", "A run over a benchmark should not stop on one video.",
     "The video is scored as uninformative; extras['parse_failures'] counts it."),
    ("A window shorter than frames_per_window frames (a video shorter than that, or window_s * "
     "fps < 2) repeats its last frame to fill the window; the official returns the shorter "
     "window (or fails when it is empty).", "Every position has the same number of window frames.",
     "Only on videos of a few frames: repeated lines in their temporal descriptions."),
    ("The video clip's 3 square crops are cut from the decoded frame and then resized by the "
     "embedder (bicubic); ImageBind's video transform resizes the short side to 224 (bilinear) "
     "and then crops.",
     "The embedder's encode_video takes frames; cropping first keeps the model code unchanged.",
     "Interpolation-level pixel differences only."),
    ("Frames are decoded from the video file at their exact indices; the official reads JPEG "
     "frames extracted beforehand with ffmpeg.",
     "No extraction step or disk space for frames; exact frame indices.",
     "JPEG compression changes pixels slightly; not measured."),
    ("Nearest neighbours by exact inner product in numpy (float32, top-k selection, ties to the "
     "lower index); the official uses a faiss IndexFlatIP.",
     "No faiss dependency; the same exact search.",
     "None beyond float rounding and the order of exact ties."),
    ("Reported AP: vadnb.metrics gives scikit-learn's average precision by default and the "
     "official trapezoid area under the PR curve with variant='trapezoid'; lavad.evaluate "
     "reports both.",
     "scikit-learn's AP is the standard estimator; the trapezoid is what LAVAD and XD-Violence "
     "report (metrics.REPORTED_AP).",
     "Higher with tied scores: on synthetic scores on LAVAD's 11-value grid "
     "(tests/test_metrics.py) the trapezoid is 4-5 points above sklearn's AP; notebook 40 prints "
     "both.", "metrics.frame_ap(..., variant='trapezoid')"),
    ("Video embedding alternative: video_clip='pairs' embeds all 10 window frames as 5 "
     "consecutive pairs with a centre crop (vadnb's earlier default).",
     "The official clip reads only the window's first and last frames, 10 s apart; 'pairs' sees "
     "the whole window. Offered for comparison; the default is the official clip.",
     "Campus perfect-perception inputs: AUC 0.790 / AP 0.579 (official clip) vs 0.869 / 0.748 "
     "('pairs'): `python benchmarks/lavad_options.py`.",
     "video_clip='imagebind' (default) | 'pairs'"),
]]

"""Every way vadnb's AnyAnomaly departs from the official code (SkiddieAhn/Paper-AnyAnomaly),
why, and what it changes; notebook 60 renders this list."""

from __future__ import annotations

from ..stages import Difference

#: Every way vadnb's AnyAnomaly departs from the official code (SkiddieAhn/Paper-AnyAnomaly),
#: why, and what it changes; notebook 60 renders this list.
DIFFERENCES: list[Difference] = [
    Difference(
        "Fusion weights and sigma are used untuned (0.6/0.3/0.1, sigma 15); `tune_fusion` "
        "tunes them on a validation split and refuses test videos.",
        "The official evaluation (`--grid_search`, on by default) tries 60 weight triples "
        "(steps of 0.1 from `np.arange(0, 1.1, 0.1)`, the third weight 1 - a - b kept when in "
        "[0, 1]; float rounding drops 6 of the 66 on paper) x 29 sigmas (1..29) on the test "
        "labels and reports the best test AUC: the maximum of 1740 tries, not one honest try. "
        "Without the search it uses 0.6/0.3/0.1 and sigma 15, vadnb's defaults.",
        "Numbers here lack the optimism of a search on test; its size is not measured here.",
        "tune_fusion(..., split='val')"),
    Difference(
        "No min-max normalisation per video (`normalise=False`).",
        "The official code smooths and normalises once over the concatenation of all test "
        "videos, a single affine map that leaves AUC unchanged; per-video normalisation "
        "stretches each normal video's wobble to the full [0, 1].",
        "Per-video normalisation cost 0.96-0.99 -> 0.82-0.86 AUC on the real C-ShT label "
        "structure with synthetic scores (issue 12); without it the AUC is the official "
        "one up to the smoothing at video boundaries.",
        "official_frame_scores(detections)"),
    Difference(
        "Each video is smoothed on its own (edges reflected).",
        "The official Gaussian runs over the concatenated test set, so the end of one video "
        "bleeds into the start of the next; a video's scores should not depend on its "
        "neighbours in a file listing.",
        "Only frames within 4 sigma (60 frames) of a video boundary change.",
        "official_frame_scores(detections)"),
    Difference(
        "The last, shorter segment of a video is scored too.",
        "The official loader keeps only whole 24-frame segments and cuts each label array "
        "to the scored length, so up to 23 frames per video are never evaluated.",
        "Evaluation covers every frame; with the official protocol, pass "
        "`trim_labels=True` to `vadnb.metrics.cvad_auc`.",
        "official_frame_scores + cvad_auc(trim_labels=True)"),
    Difference(
        "Option `parser='vadnb'`: the number after 'Score', else the first number in [0, 1] ('80%' "
        "and '8/10' read 0.8); a reply without one is filled in from the neighbouring segments "
        "(default: the official first number anywhere, unclipped, 0 if none).",
        "The official parser takes the first number anywhere in the reply (a '2' in 'row 2' "
        "included, '80%' as 80) and reads a reply without one as 0, i.e. 'surely normal'; "
        "both defaults count unparsed replies in the parse log.",
        "Perfect perception on campus (`python benchmarks/anyanomaly_perfect.py "
        "parser=\"'vadnb'\"`): C-VAD mean AUC 0.998 / AP 0.948, the same as the default "
        "(the oracle's replies are well formed); differs only on odd replies.",
        "parser='vadnb'"),
    Difference(
        "With several descriptions, each description's three views are fused first and "
        "the maximum over descriptions is taken afterwards.",
        "The official code takes the maximum per view over the descriptions, which can add "
        "a key-frame answer about one description to a grid answer about another.",
        "Identical with one description (every C-VAD single-type set).",
        "official_frame_scores (max per view)"),
    Difference(
        "Option `prompt_style='vadnb'`: a shorter question with a fixed 'Score: ... Reason: "
        "...' answer form, the grid's reading order in words (default: the official Task / "
        "Consideration / Output instruction, the grid's with its Context line).",
        "A fixed answer form makes the score easy to find; the official wording asks for "
        "'a float, rounded to one decimal place' and a reason in free form.",
        "Perfect perception on campus (`python benchmarks/anyanomaly_perfect.py "
        "prompt_style=\"'vadnb'\"`): C-VAD mean AUC 0.998 / AP 0.948, the same as the default (the "
        "oracle VLM reads the description, not the wording); with real VLMs not measured.",
        "prompt_style='vadnb'"),
    Difference(
        "Option greedy decoding without a system line (`temperature=0, top_p=1.0, "
        "repetition_penalty=1.0, system_prompt=None`; default: the official system line "
        "'You are a vision anomaly detector.', temperature 0.1, top_p 0.001, repetition "
        "penalty 1.05, 50 new tokens, all sent with every question and part of its cache key).",
        "Greedy decoding repeats exactly on every backend; top_p 0.001 is practically greedy "
        "but the repetition penalty changes which token wins.",
        "Perfect perception on campus (`python benchmarks/anyanomaly_perfect.py temperature=0 "
        "top_p=1.0 repetition_penalty=1.0 system_prompt=None`): C-VAD mean AUC 0.998 / AP 0.948, "
        "the same as the default (the oracle ignores decoding); with real VLMs not measured.",
        "temperature=0, top_p=1.0, repetition_penalty=1.0, system_prompt=None"),
    Difference(
        "CLIP text side: the same 6-template ensemble for the key frame, the windows and the "
        "temporal window choice, averaged after L2 normalisation.",
        "The official uses the bare description for the key frame and the grid window, and "
        "a 21-template ensemble (averaged before normalisation) for the position heat map.",
        "Not measured; the key frame may differ where two frames are close under CLIP.",
        "templates=(\"{}\",)"),
    Difference(
        "Position softmax: over the descriptions plus a 'normal scene' class, at CLIP's "
        "logit scale 100.",
        "The official softmax runs over the benchmark's anomaly-type names at scale 1 (raw "
        "cosines: nearly uniform before the min-max); a single custom description needs a "
        "competitor, and scale 100 gives a contrasted map.",
        "The heat map's contrast; not measured on the benchmarks.",
        "softmax_scale=1, normal_class=None, other_classes=CVAD_TYPES[dataset]"),
    Difference(
        "Option `window_resize='area'`: the frame is squashed to 240 px by pixel averaging "
        "before the windows are cut (default: bilinear, the official `cv2.resize` default).",
        "Area averaging does not alias when a large frame is shrunk; the official resize "
        "samples bilinearly.",
        "Perfect perception on campus (`python benchmarks/anyanomaly_perfect.py "
        "window_resize=\"'area'\"`): C-VAD mean AUC 0.998 / AP 0.948, the same as the "
        "default (the oracle's heat maps are flat); with a real CLIP not measured.",
        "window_resize='area'"),
    Difference(
        "Windows go through the CLIP backend's own preprocessing.",
        "The official resizes each window to 224 px and feeds pixel values /255 without "
        "CLIP's mean/std normalisation, an input CLIP was not trained on.",
        "Not measured.",
        None),
    Difference(
        "The masked frame keeps the frame's resolution; the grid's cells are cut from each "
        "context frame at its own resolution (the box scaled from 240 px) and resized once "
        "to 224 px (a 448 px grid); frames are read at most `view_max_side` px (896).",
        "The official masks a 224x224 copy of the key frame and cuts the grid's windows from "
        "the 240x240 squashed frame, resizing each to 224 and then to 112-px cells (a 224-px "
        "grid), which halves the detail a VLM can see; capping the side bounds memory for "
        "HD video and leaves ShanghaiTech and Avenue untouched.",
        "Not measured.",
        "grid_cell=112"),
]

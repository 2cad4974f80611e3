"""Mutation run for LAVAD (issue 23): plant one plausible result-changing bug at a time in
vadnb/lavad/ and see which test of tests/test_lavad.py catches it (``_mutants.py``).

    PYTHONPATH=. VADNB_PROFILE=tiny python benchmarks/mutants_lavad.py [--all] [NAME ...]

The real-model tiny end-to-end test is left out unless ``--all``.
"""

from __future__ import annotations

from _mutants import as_rows, main

L = "vadnb/lavad/"
C = L + "core.py"
#: name -> (file, old, new); each `old` must occur in the file (the first is replaced)
MUTANTS = {
    "captions joined by '\\n '": (C, 'body = "\\n".join(', 'body = "\\n ".join('),
    "summary: first line kept": (C, "return lines[-1] if lines else", "return lines[0] if lines else"),
    "score: last bracket parsed": (C, "stages.parse_bracket_score(str(r))",
                                   "stages.parse_bracket_score(str(r)[str(r).rfind('['):])"),
    "failed replies zero-filled": (C, "return stages.interpolate_missing(parsed)[0], parsed, log",
                                   "return np.array([p or 0.0 for p in parsed]), parsed, log"),
    "cleaning K=2 by default": (C, "caption_k: Annotated[int, Field(ge=1, le=100)] = 1",
                                "caption_k: Annotated[int, Field(ge=1, le=100)] = 2"),
    "refine over another video's index": (C, 'r["video_embeddings"], r["summary_embeddings"], r["summary_scores"],',
                                          'r["video_embeddings"], out[0]["summary_embeddings"], out[0]["summary_scores"],'),
    "refine temperature ignored": (C, "k=k, temperature=temperature)", "k=k, temperature=1.0)"),
    "distances for similarities (farthest K)": (C, "stages.knn_softmax(video_embeddings, summary_embeddings,",
                                                "stages.knn_softmax(-np.asarray(video_embeddings), summary_embeddings,"),
    "uniform weights (mean of K)": (C, "k=k, temperature=temperature)", "k=k, temperature=temperature * 1e6)"),
    "refine K default 5": (C, "refine_k: Annotated[int, Field(ge=1, le=1000)] = 10",
                           "refine_k: Annotated[int, Field(ge=1, le=1000)] = 5"),
    "crops' mean -> centre crop": (C, 'else mean_unit(vecs)', 'else vecs[:, 1]'),
    "clip: first frame only": (L + "video_clip.py", "return w[[0, -1]] if", "return w[[0, 0]] if"),
    "clip: pairs by default": (C, '"pairs"] = "imagebind"', '"pairs"] = "pairs"'),
    "crops: right crop = left": (L + "video_clip.py", "offsets = [0, int(np.ceil((max(h, w) - side) / 2)), max(h, w) - side]",
                                 "offsets = [0, int(np.ceil((max(h, w) - side) / 2)), 0]"),
    "window not centred": (C, "window_frames(int(c), v.num_frames,",
                           "window_frames(min(int(c) + int(cfg.window_s * v.fps) // 2, v.num_frames - 1), v.num_frames,"),
    "window 5 s by default": (C, "window_s: Annotated[float, Field(gt=0, le=600)] = 10.0",
                              "window_s: Annotated[float, Field(gt=0, le=600)] = 5.0"),
    "8 frames per window": (C, "frames_per_window: Annotated[int, Field(ge=1, le=256)] = 10",
                            "frames_per_window: Annotated[int, Field(ge=1, le=256)] = 8"),
    "to_frames stride 15": (C, "segment_length=stride)", "segment_length=stride - 1)"),
    "to_frames not cut to length": (C, "return metrics.segments_to_frames(position_scores, num_frames, segment_length=stride)",
                                    "return np.repeat(np.asarray(position_scores, dtype=float), stride)"),
    "centres at idx % 16 == 8": (C, "centres = stages.centre_frames(v.num_frames, cfg.stride)",
                                 "centres = np.minimum(stages.centre_frames(v.num_frames, cfg.stride) + cfg.stride // 2, v.num_frames - 1)"),
    "summary budget = whole context": (L + "budget.py", "max(1, cfg.llm_context_tokens - n)", "cfg.llm_context_tokens + 0 * n"),
    "summary index keeps the last score": (C, "first.setdefault(s, float(x))", "first[s] = float(x)"),
    "caption index: first captioner only": (C, "for p in zip(*r[\"pooled_captions\"]) for c in p",
                                            "for c in r[\"pooled_captions\"][0]"),
    "paper decoding: no top_p": (L + "budget.py", '"paper": (0.6, 0.9)', '"paper": (0.6, 1.0)'),
    "paper decoding: asked once": (L + "budget.py", 'if temperature > 0 else None', 'if temperature > 9 else None'),
    "score prompt: format before context": (C, 'f"{cfg.score_context}\\n{cfg.score_format}', 'f"{cfg.score_format}\\n{cfg.score_context}'),
    "captions in reverse order": (C, "for c in temporal_description)", "for c in reversed(temporal_description))"),
    "caption length capped at 20": (C, "Caption(f, cfg.caption_max_new_tokens)", "Caption(f, 20)"),
    "evaluate: AP trapezoid for sklearn": (L + "runner.py", '"ap_refined": metrics.frame_ap(labels, refined),',
                                           '"ap_refined": metrics.frame_ap(labels, refined, variant="trapezoid"),'),
    "rescore temperature ignored": (L + "runner.py", 't = float(temperature if temperature is not None else cfg.get("temperature", 1.0))',
                                    't = 1.0'),
    "frame rate hard-coded 30": (C, "window_frames(int(c), v.num_frames, v.fps,", "window_frames(int(c), v.num_frames, 30.0,"),
    "closed window (VERA's)": (C, "window_frames = stages.window_frames_half_open", "window_frames = stages.window_frames_closed"),
    "summary: text after the last newline": (C, 'lines = [ln.strip() for ln in (reply or "").splitlines() if ln.strip()]',
                                             'lines = [ln.strip() for ln in (reply or "").split("\\n")]'),
    "frame scores from the raw scores": (C, 'r["frame_scores"] = to_frames(r["scores"],', 'r["frame_scores"] = to_frames(r["raw_scores"],'),
    "released: temperature ignored": (L + "official.py", "w = stages._softmax(sims / temperature, axis=1)",
                                      "w = stages._softmax(sims, axis=1)"),
    "released: weights not normalised": (L + "official.py", "w = stages._softmax(sims / temperature, axis=1)",
                                         "w = np.exp(sims / temperature)"),
    "budget: prompt without chat template": (L + "budget.py", 'llm.tokenizer(llm.prompt(m), add_special_tokens=False)',
                                             'llm.tokenizer(m[-1]["content"], add_special_tokens=False)'),
    "evaluate: raw AUC from refined scores": (L + "runner.py", 'raw = {n: frame_scores_of(detections[n], "raw_score") for n in labels}',
                                              'raw = {n: frame_scores_of(detections[n], "score") for n in labels}'),
}


if __name__ == "__main__":
    main(as_rows(MUTANTS), ["tests/test_lavad.py"], slow="not tiny_profile_end_to_end")

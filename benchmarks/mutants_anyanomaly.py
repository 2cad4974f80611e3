"""Mutation run for AnyAnomaly: plant plausible result-changing bugs one at a time in
``vadnb/anyanomaly`` and see which test of ``tests/test_anyanomaly.py`` catches each
(``_mutants.py``).

    PYTHONPATH=. VADNB_PROFILE=tiny python benchmarks/mutants_anyanomaly.py [NAME ...]
"""

from __future__ import annotations

from _mutants import main

A = "vadnb/anyanomaly/"
MUTANTS: list[tuple[str, str, str, str]] = [  # name, file, old, new
    ("grid from the key frame x4", A + "core.py", "[views[f] for f in contexts[p, s]]",
     "[views[keys[p, s]] for f in contexts[p, s]]"),
    ("softmax scale ignored by run()", A + "core.py",
     "class_emb, cfg.softmax_scale)", "class_emb)"),
    ("window chosen from the key frame only", A + "core.py",
     "best_window([win[f] @ class_emb[p] for f in contexts[p, s]])",
     "best_window([win[keys[p, s]] @ class_emb[p]])"),
    ("default weights changed", A + "core.py", "AfterValidator(some_weight)] = (0.6, 0.3, 0.1)",
     "AfterValidator(some_weight)] = (0.5, 0.3, 0.2)"),
    ("default sigma changed", A + "core.py", "Field(ge=0, le=10_000)] = 15.0",
     "Field(ge=0, le=10_000)] = 10.0"),
    ("prompt scale inverted", A + "prompts.py",
     '"A score of 1 means **{k}** is clearly present in the image, while a score of 0 means "',
     '"A score of 0 means **{k}** is clearly present in the image, while a score of 1 means "'),
    ("grid prompt without its Context line", A + "prompts.py",
     '(_OFFICIAL_CONTEXT if temporal else "")', '""'),
    ("parser takes the last number", A + "fusion.py",
     'm = re.search(r"\\d+(?:\\.\\d+)?", reply or "")',
     'm = ([None] + list(re.finditer(r"\\d+(?:\\.\\d+)?", reply or "")))[-1]'),
    ("parser clips to [0, 1]", A + "fusion.py", "return float(m.group(0)) if m else None",
     "return min(1.0, float(m.group(0))) if m else None"),
    ("vadnb parser zero-fills instead of interpolating", A + "fusion.py",
     "filled = np.apply_along_axis(lambda x: stages.interpolate_missing(x)[0], 1, raw)",
     "filled = np.nan_to_num(raw, nan=0.0)"),
    ("official parser interpolates instead of 0", A + "fusion.py",
     "return raw, np.nan_to_num(raw, nan=0.0), log",
     "return raw, np.apply_along_axis(lambda x: stages.interpolate_missing(x)[0], 1, raw), log"),
    ("key-frame ties toward the latest frame", A + "core.py",
     "keys[:, s] = a + np.argmax(sims[:, a:b], axis=1)",
     "keys[:, s] = b - 1 - np.argmax(sims[:, a:b][:, ::-1], axis=1)"),
    ("context frames start at the key frame", A + "core.py",
     "idx = start + phase + spacing * np.arange(n, dtype=np.int64)",
     "idx = key + spacing * np.arange(n, dtype=np.int64)"),
    ("window resize INTER_AREA by default", A + "core.py",
     'window_resize: Literal["linear", "area"] = "linear"',
     'window_resize: Literal["linear", "area"] = "area"'),
    ("greedy by default (temperature 0)", A + "core.py", "Field(ge=0, le=5)] = 0.1",
     "Field(ge=0, le=5)] = 0.0"),
    ("repetition penalty not sent", A + "prompts.py",
     "repetition_penalty=cfg.repetition_penalty)", ")"),
    ("system line not sent", A + "prompts.py", "system=cfg.system_prompt,", "system=None,"),
    ("top_p not sent", A + "prompts.py", "cfg.temperature, top_p=cfg.top_p,", "cfg.temperature,"),
    ("position and temporal swapped in fusion", A + "core.py",
     "fuse(filled[..., 0], filled[..., 1], filled[..., 2], cfg.weights)",
     "fuse(filled[..., 0], filled[..., 2], filled[..., 1], cfg.weights)"),
    ("heat map: max over scales instead of mean", A + "views.py",
     "total += cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)",
     "total = np.maximum(total, cv2.resize(grid, (width, height), "
     "interpolation=cv2.INTER_LINEAR))"),
    ("smoothing kernel cut at 3 sigma", A + "fusion.py",
     "taps=2 * int(4 * float(sigma) + 0.5) + 1", "taps=2 * int(3 * float(sigma) + 0.5) + 1"),
    ("grid window: mean over frames instead of max", A + "views.py",
     "np.asarray(window_scores).max(axis=0)", "np.asarray(window_scores).mean(axis=0)"),
    ("ShanghaiTech prompt says Output", A + "official.py",
     '{"shanghaitech": "Response", "avenue": "Output"}',
     '{"shanghaitech": "Output", "avenue": "Output"}'),
    ("official fusion not smoothed", A + "official.py",
     "fused = smooth(fuse(frames[:, 0], frames[:, 1], frames[:, 2], weights), sigma)",
     "fused = fuse(frames[:, 0], frames[:, 1], frames[:, 2], weights)"),
    ("mean over descriptions instead of max", A + "core.py",
     "top = np.max(np.stack(list(per_prompt.values())), axis=0)",
     "top = np.mean(np.stack(list(per_prompt.values())), axis=0)"),
    ("heat map of the first description for all", A + "core.py",
     "class_emb, cfg.softmax_scale)[:, p]", "class_emb, cfg.softmax_scale)[:, 0]"),
]


#: The whole-run tests go first: they catch most mutants, so -x stops early.
FIRST = ["tests/test_anyanomaly.py::test_run_as_a_whole_matches_the_official_pipeline",
         "tests/test_anyanomaly.py::test_decoding_settings_are_keyed_and_reach_the_backends"]


if __name__ == "__main__":
    main(MUTANTS, [*FIRST, "tests/test_anyanomaly.py"])

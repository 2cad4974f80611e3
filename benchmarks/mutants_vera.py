"""Mutation run for VERA (issue 23): plant one plausible result-changing bug at a time in
vadnb/vera/ and see which test of tests/test_vera.py catches it (``_mutants.py``).

    PYTHONPATH=. VADNB_PROFILE=tiny python benchmarks/mutants_vera.py [--all] [NAME ...]

By default the three slow tests (the tiny models, the oracle loop, the warm re-run; about
60 of the file's 90 s) are left out so that a whole run takes minutes; ``--all`` runs
every test for each mutant.
"""

from __future__ import annotations

from _mutants import as_rows, main

V = "vadnb/vera/"
#: name -> (file, old, new); each `old` must occur in the file
MUTANTS = {
    "kernel centred by default": (V + "core.py", 'Literal["centred", "paper"] = "paper"',
                                  'Literal["centred", "paper"] = "centred"'),
    "no rounding by default": (V + "core.py", "Field(ge=0, le=15)] = 1", "Field(ge=0, le=15)] = None"),
    "python round": (V + "core.py", "else np.round(s, int(decimals))",
                     "else np.array([round(float(v), int(decimals)) for v in s])"),
    "kernel on-centre": (V + "core.py", "x = np.linspace(-((taps + 1) // 2), taps // 2, taps)",
                         "x = np.linspace(-(taps // 2), taps // 2, taps)"),
    "sigma ignored": (V + "core.py", "g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))",
                      "g = np.exp(-(x ** 2) / (2.0 * 5.0 ** 2))"),
    "temperature x10 dropped": (V + "core.py", "k=n, temperature=temperature)", "k=n, temperature=1.0)"),
    "top-n ceil": (V + "core.py", "int(math.floor(fraction * num_segments + 1e-9))",
                   "int(math.ceil(fraction * num_segments))"),
    "failed replies zero-filled": (V + "core.py", "[None if v is None else float(v) for v in labels]",
                                   "[0.0 if v is None else float(v) for v in labels]"),
    "inference label first Output": (V + "prompts.py", 'return 1 if str(reply or "").rstrip()[-1:] == "1" else 0',
                                     'return 1 if "1" in str(reply or "") else 0'),
    "training label first Output": (V + "prompts.py", '"0" in str(reply or "").split("Output")[-1]',
                                    '"0" in str(reply or "").split("Output")[1 if "Output" in str(reply) else 0]'),
    "inference uses training rule": (V + "core.py", 'read_label(r, cfg.label_reading, "inference")',
                                     'read_label(r, cfg.label_reading, "learning")'),
    "crop mean -> centre crop": (V + "core.py", 'cfg.vlm_batch_size, "VERA embeddings"))',
                                 'cfg.vlm_batch_size, "VERA embeddings")[:, 1:2])'),
    "features window by default": (V + "core.py", 'Literal["lavad", "window"] = "lavad"',
                                   'Literal["lavad", "window"] = "window"'),
    "prior centre off": (V + "core.py", "c = max(1, int(num_frames) // 2)", "c = max(1, int(num_frames) // 3)"),
    # (the XD script's "all neighbours when n <= 4" cannot show: 4 segments or fewer are
    # smoothed by a 15-tap kernel into values the sigmoid and rounding make 0.5 or so)
    "xd trimming ignored": (V + "official.py", "return frames[:-mod] if mod else frames",
                            "return frames"),
    "xd no sigmoid": (V + "official.py", "np.round(1.0 / (1.0 + np.exp(-frames)), 1)[:-1]",
                      "np.round(frames, 1)[:-1]"),
    "xd AP sklearn": (V + "official.py", 'variant="trapezoid"', 'variant="sklearn"'),
    "stride frames wrong": (V + "core.py", "segment_length=cfg.stride", "segment_length=16"),
    "window fps hard-coded 30": (V + "prompts.py", "video.num_frames, video.fps, cfg.window_s,\n",
                                 "video.num_frames, 30.0, cfg.window_s,\n"),
    "sigma default 5": (V + "core.py", "smooth_sigma: Annotated[float, Field(gt=0)] = 10.0",
                        "smooth_sigma: Annotated[float, Field(gt=0)] = 5.0"),
    "top-n fraction 0.2": (V + "core.py", "ensemble_fraction: Annotated[float, Field(ge=0, le=1)] = 0.15",
                           "ensemble_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2"),
    "questions left out of the prompt": (V + "prompts.py", "f\"{_numbered(questions)}\\n\"", "\"\""),
    "reply budget 512": (V + "core.py", "Field(ge=1, le=32_768)] = 1024", "Field(ge=1, le=32_768)] = 512"),
    "VLM frames 224 px": (V + "core.py", "Field(ge=16, le=4096)] = 448", "Field(ge=16, le=4096)] = 224"),
    "features from VERA's window": (V + "prompts.py", "window_clip(video, window_frames_half_open(",
                                     "window_clip(video, window_frames_closed("),
}


#: left out unless --all: slow, and each catches nothing the others miss on these mutants
SLOW = "not tiny_models and not oracle_learns and not one_model_at_a_time"


if __name__ == "__main__":
    main(as_rows(MUTANTS), ["tests/test_vera.py"], slow=SLOW)

"""Mutation run for VERA (issue 23): plant one plausible result-changing bug at a time in
vadnb/vera/, run tests/test_vera.py, restore the file, print which test caught it.

    PYTHONPATH=. VADNB_PROFILE=tiny python benchmarks/mutants_vera.py [NAME ...]
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
V = "vadnb/vera/"
#: name -> (file, old, new); each `old` must occur in the file
MUTANTS = {
    "kernel centred by default": (V + "core.py", 'Literal["centred", "paper"] = "paper"',
                                  'Literal["centred", "paper"] = "centred"'),
    "no rounding by default": (V + "core.py", "Field(ge=0, le=15)] = 1", "Field(ge=0, le=15)] = None"),
    "python round": (V + "core.py", "return np.round(s, int(decimals))",
                     "return np.array([round(float(v), int(decimals)) for v in s])"),
    "kernel on-centre": (V + "core.py", "x = np.linspace(-((taps + 1) // 2), taps // 2, taps)",
                         "x = np.linspace(-(taps // 2), taps // 2, taps)"),
    "sigma ignored": (V + "core.py", "g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))",
                      "g = np.exp(-(x ** 2) / (2.0 * 5.0 ** 2))"),
    "temperature x10 dropped": (V + "core.py", "k=n, temperature=temperature)", "k=n, temperature=1.0)"),
    "top-n ceil": (V + "core.py", "int(math.floor(fraction * num_segments + 1e-9))",
                   "int(math.ceil(fraction * num_segments))"),
    "failed replies zero-filled": (V + "core.py", "raw, missing = interpolate_missing(",
                                   "raw, missing = (lambda v: (v[0] * 0 + __import__('numpy').nan_to_num(v[0]), v[1]))(interpolate_missing("),
    "inference label first Output": (V + "prompts.py", 'return 1 if str(reply or "").rstrip()[-1:] == "1" else 0',
                                     'return 1 if "1" in str(reply or "") else 0'),
    "training label first Output": (V + "prompts.py", '"0" in str(reply or "").split("Output")[-1]',
                                    '"0" in str(reply or "").split("Output")[1 if "Output" in str(reply) else 0]'),
    "inference uses training rule": (V + "core.py", 'read_label(r, cfg.label_reading, "inference")',
                                     'read_label(r, cfg.label_reading, "learning")'),
    "crop mean -> centre crop": (V + "core.py", "mean_unit(np.stack(vecs).reshape(len(asks), len(asks[0]), -1))",
                                 "mean_unit(np.stack(vecs).reshape(len(asks), len(asks[0]), -1)[:, 1:2])"),
    "features window by default": (V + "core.py", 'Literal["lavad", "window"] = "lavad"',
                                   'Literal["lavad", "window"] = "window"'),
    "prior centre off": (V + "core.py", "c = max(1, int(num_frames) // 2)", "c = max(1, int(num_frames) // 3)"),
    "xd top-n rule": (V + "official.py", "if len(s) > 4 else len(s)", "if len(s) > 4 else 1"),
    "xd no sigmoid": (V + "official.py", "np.round(1.0 / (1.0 + np.exp(-frames)), 1)[:-1]",
                      "np.round(frames, 1)[:-1]"),
    "xd AP sklearn": (V + "official.py", 'variant="trapezoid"', 'variant="sklearn"'),
    "stride frames wrong": (V + "core.py", "segment_length=cfg.stride", "segment_length=16"),
}


def run(name: str) -> str:
    path, old, new = MUTANTS[name]
    f = ROOT / path
    text = f.read_text()
    if old not in text:
        return "NOT APPLIED (text not found)"
    f.write_text(text.replace(old, new, 1))
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                              "tests/test_vera.py"], cwd=ROOT, capture_output=True, text=True,
                             timeout=900).stdout
    finally:
        subprocess.run(["git", "checkout", "--", path], cwd=ROOT, check=True)
    failed = re.findall(r"FAILED tests/test_vera.py::(\S+)", out)
    return f"caught by {failed[0]}" if failed else "MISSED"


if __name__ == "__main__":
    names = sys.argv[1:] or list(MUTANTS)
    results = {n: run(n) for n in names}
    for n, r in results.items():
        print(f"{n:32s} {r}")
    caught = sum(r.startswith("caught") for r in results.values())
    print(f"caught {caught} of {len(results)}")

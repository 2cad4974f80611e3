"""The mutation runs (benchmarks/mutants_*.py) stay applicable: each planted bug's text occurs
exactly once in its file, so a refactor cannot silently turn a mutant into a no-op."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["anomalyclip", "anyanomaly", "lavad", "vera"]


def planted(method: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, str]]:
    """The (name, file, old, new) rows the method's mutation script would run."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import _mutants

    rows: list[tuple[str, str, str, str]] = []
    monkeypatch.setattr(_mutants, "main", lambda mutants, tests, slow=None: rows.extend(mutants))
    monkeypatch.setattr(sys, "argv", ["mutants"])
    runpy.run_path(str(ROOT / "benchmarks" / f"mutants_{method}.py"), run_name="__main__")
    return rows


@pytest.mark.parametrize("method", METHODS)
def test_every_mutant_matches_its_file_exactly_once(method, monkeypatch):
    rows = planted(method, monkeypatch)
    assert len(rows) >= 20
    counts = {name: (ROOT / file).read_text().count(old) for name, file, old, _ in rows}
    assert {name: n for name, n in counts.items() if n != 1} == {}

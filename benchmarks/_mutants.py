"""The mutation-run harness the ``benchmarks/mutants_*.py`` files share (issue 23).

Each mutant is an exact string replacement (name, file, old, new) that must match once: it
plants one plausible result-changing bug, the method's test file runs (``-x``), the file is
restored with ``git checkout``, and the first test that failed is printed (or MISSED).

    PYTHONPATH=. VADNB_PROFILE=tiny python benchmarks/mutants_lavad.py [--all] [--list]
        [--timeout S] [NAME | NUMBER ...]

It refuses to start while a file it mutates has uncommitted changes (the restore would lose
them), or while the tests fail without a mutant (a failing suite "catches" every mutant).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
Mutant = tuple[str, str, str, str]  # name, file (from the repository root), old, new


def as_rows(mutants: Mapping[str, tuple[str, str, str]] | Sequence[Mutant],
            prefix: str = "") -> list[Mutant]:
    """The mutants as (name, file, old, new) rows, ``prefix`` put before each file."""
    rows = ([(n, *t) for n, t in mutants.items()] if isinstance(mutants, Mapping)
            else list(mutants))
    return [(name, prefix + file, old, new) for name, file, old, new in rows]


def _pytest(tests: Sequence[str], select: str | None, timeout: int
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           *tests, *(["-k", select] if select else [])], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def run_one(mutant: Mutant, tests: Sequence[str], select: str | None, timeout: int) -> str:
    """Plant ``mutant``, run the tests, restore the file: which test caught it, or MISSED."""
    _, file, old, new = mutant
    path = ROOT / file
    text = path.read_text()
    if text.count(old) != 1:
        return f"NOT APPLIED ({text.count(old)} matches)"
    path.write_text(text.replace(old, new))
    try:
        proc = _pytest(tests, select, timeout)
    except subprocess.TimeoutExpired:
        return "caught? (timed out)"
    finally:
        subprocess.run(["git", "checkout", "--", file], cwd=ROOT, check=True)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M)
    if failed:
        return "caught by " + failed[0].split("::")[-1].split(" ")[0]
    return f"caught (pytest rc {proc.returncode})" if proc.returncode else "MISSED"


def main(mutants: Sequence[Mutant], tests: Sequence[str], slow: str | None = None) -> None:
    """The command line of a mutants file. ``tests``: pytest arguments (files, test ids run
    first); ``slow``: a ``-k`` expression that leaves the slow tests out unless ``--all``."""
    ap = argparse.ArgumentParser(description=f"Mutation run over {' '.join(tests)}")
    ap.add_argument("names", nargs="*", help="mutant names or numbers (default: all)")
    ap.add_argument("--all", action="store_true", help="run the slow tests too")
    ap.add_argument("--list", action="store_true", help="list the mutants and stop")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per test run")
    args = ap.parse_args()
    chosen = [(i, m) for i, m in enumerate(mutants, 1)
              if not args.names or m[0] in args.names or str(i) in args.names]
    if args.list:
        for i, (name, file, _, _) in chosen:
            print(f"{i:2d}  {name:55s} {file}")
        return
    files = sorted({m[1] for _, m in chosen})
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty:
        sys.exit(f"uncommitted changes in files the mutants edit; commit them first:\n{dirty}")
    select = None if args.all else slow
    clean = _pytest(tests, select, args.timeout)
    if clean.returncode != 0:
        sys.exit("the tests fail without a mutant; fix them first:\n" + clean.stdout[-2000:])
    caught = 0
    for i, mutant in chosen:
        result = run_one(mutant, tests, select, args.timeout)
        caught += result.startswith("caught")
        print(f"{i:2d}  {mutant[0]:55s} {result}", flush=True)
    print(f"caught {caught} of {len(chosen)}")

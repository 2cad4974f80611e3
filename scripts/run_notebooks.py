"""The main job: execute every notebook in order, headless, and index the results.

    python scripts/run_notebooks.py                  # all notebooks, profile from $VADNB_PROFILE/auto
    python scripts/run_notebooks.py --only 00 10     # a few, by number or name
    python scripts/run_notebooks.py -p PROFILE=tiny  # override a parameter in every notebook

Each notebook runs with papermill into ``runs/<timestamp>/`` (an executed copy, its
artifacts in ``runs/<timestamp>/<notebook>/`` and an HTML rendering), and
``runs/<timestamp>/index.html`` lists them with their status and time. The script prints
a progress line per notebook and exits non-zero naming the notebook and cell that failed.
"""

from __future__ import annotations

import argparse
import ast
import html
import json
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _parse_param(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    if not name or not _:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value  # a bare string


def _select(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.stem == o or nb.stem.startswith(f"{o}_") or
                                            nb.stem.split("_")[0] == o for o in only)]
    if not chosen:
        names = ", ".join(nb.stem for nb in notebooks)
        raise SystemExit(f"no notebook matches {only}; available: {names}")
    return chosen


def _to_html(executed: Path) -> Path | None:
    try:
        import nbformat
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    except Exception as err:  # noqa: BLE001 - the index still links the .ipynb
        print(f"    (no HTML rendering: {err})")
        return None
    out = executed.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _leaderboard(run_dir: Path) -> str:
    """The comparison notebook's leaderboard when it ran, then every metrics.json written."""
    parts = []
    for board in sorted(run_dir.glob("*/leaderboard.html")):
        parts.append(f"<h2>Leaderboard ({html.escape(board.parent.name)})</h2>"
                     "<p>Rows computed with the tiny profile come from random-init models: "
                     "their numbers are meaningless. The classical row uses no learned model.</p>"
                     + board.read_text(encoding="utf-8"))
    return "".join(parts) + _metrics_rows(run_dir)


def _metrics_rows(run_dir: Path) -> str:
    rows = []
    for path in sorted(run_dir.glob("*/metrics.json")):
        try:
            m = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(m, dict):
            continue
        flat = {k: v for k, v in m.items() if isinstance(v, (int, float, str, bool))}
        rows.append((path.parent.name, flat))
    if not rows:
        return ""
    keys = sorted({k for _, r in rows for k in r})
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr><td>" + html.escape(nb) + "</td>" +
        "".join(f"<td>{html.escape(_fmt(r.get(k, '')))}</td>" for k in keys) + "</tr>"
        for nb, r in rows)
    return (f"<h2>Metrics the notebooks wrote</h2><p>Rows computed with the tiny profile are "
            f"random-init models: their numbers are meaningless.</p>"
            f"<table><tr><th>notebook</th>{head}</tr>{body}</table>")


def _fmt(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _write_index(run_dir: Path, results: list[dict], params: dict) -> Path:
    rows = []
    for r in results:
        link = r.get("html") or r["executed"]
        colour = {"ok": "#2a7", "failed": "#c33"}.get(r["status"], "#888")
        rows.append(
            f"<tr><td><a href='{html.escape(Path(link).name)}'>{html.escape(r['notebook'])}</a></td>"
            f"<td style='color:{colour}'>{r['status']}</td><td>{r['seconds']:.1f}</td>"
            f"<td>{html.escape(r.get('error', ''))}</td></tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>vadnb run {run_dir.name}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd}}</style>
</head><body><h1>vadnb notebooks, run {html.escape(run_dir.name)}</h1>
<p>Parameters: {html.escape(json.dumps(params))}</p>
<table><tr><th>notebook</th><th>status</th><th>seconds</th><th>error</th></tr>{''.join(rows)}</table>
{_leaderboard(run_dir)}
</body></html>"""
    index = run_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="notebook numbers or names to run (default: all)")
    ap.add_argument("--notebooks", type=Path, default=REPO / "notebooks")
    ap.add_argument("--out", type=Path, default=REPO / "runs", help="parent folder of the run folder")
    ap.add_argument("-p", "--parameter", type=_parse_param, action="append", default=[],
                    help="NAME=VALUE passed to every notebook's parameters cell")
    ap.add_argument("--keep-going", action="store_true", help="run the rest after a failure")
    args = ap.parse_args(argv)

    import papermill as pm

    notebooks = _select(sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb")), args.only)
    if not notebooks:
        print(f"no notebooks found in {args.notebooks}", file=sys.stderr)
        return 2
    run_dir = args.out / datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    params = dict(args.parameter)
    print(f"[vadnb] running {len(notebooks)} notebooks into {run_dir}")
    results: list[dict] = []
    failed = None
    for i, nb in enumerate(notebooks, 1):
        executed = run_dir / nb.name
        artifacts = run_dir / nb.stem
        t0 = time.perf_counter()
        print(f"[{i}/{len(notebooks)}] {nb.stem} ...", flush=True)
        record = {"notebook": nb.stem, "executed": str(executed)}
        try:
            pm.execute_notebook(str(nb), str(executed), cwd=str(nb.parent), kernel_name="python3",
                                parameters={**params, "OUTPUT_DIR": str(artifacts)},
                                progress_bar=False)
            record["status"] = "ok"
        except pm.PapermillExecutionError as err:
            record["status"] = "failed"
            record["error"] = f"cell {err.exec_count or err.cell_index}: {err.ename}: {err.evalue}"
        except Exception as err:  # noqa: BLE001 - kernel died, notebook unreadable, ...
            record["status"] = "failed"
            record["error"] = f"{type(err).__name__}: {err}"
        record["seconds"] = time.perf_counter() - t0
        if executed.exists():
            h = _to_html(executed)
            if h:
                record["html"] = str(h)
        results.append(record)
        print(f"    {record['status']} in {record['seconds']:.1f} s"
              + (f": {record['error']}" if record["status"] != "ok" else ""), flush=True)
        if record["status"] != "ok":
            failed = failed or record
            if not args.keep_going:
                break
    index = _write_index(run_dir, results, params)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    print(f"[vadnb] index: {index}")
    if failed:
        print(f"[vadnb] FAILED: notebook {failed['notebook']}, {failed['error']} "
              f"(executed copy: {failed['executed']})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

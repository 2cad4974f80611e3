"""The main job: execute every notebook in order, headless, and index the results.

    python scripts/run_notebooks.py                  # all notebooks, profile from $VADNB_PROFILE/auto
    python scripts/run_notebooks.py --only 00 10     # a few, by number or name
    python scripts/run_notebooks.py -p PROFILE=tiny  # override a parameter in every notebook

Each notebook runs with papermill into ``runs/<timestamp>/`` (an executed copy, its
artifacts in ``runs/<timestamp>/<notebook>/`` and an HTML rendering), and
``runs/<timestamp>/index.html`` is the page to open: the reading order, then per notebook what
it teaches on a CPU and with a GPU, its status and time, thumbnails of its figures, the
numbers that mean something (perfect-perception bounds, the classical baseline; a tiny
model's are left out) and links to its artifacts, then the leaderboard. The script prints
a progress line per notebook and exits non-zero naming the notebook and cell that failed.
"""

from __future__ import annotations

import argparse
import ast
import html
import json
import re
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


# --------------------------------------------------------------------------- running one notebook

CELL_TIMEOUT_S = 600  # no lesson cell takes a minute on 2 cores; a hung one fails here


class NotebookFailed(RuntimeError):
    """A notebook stopped: the message names the notebook and the cell (index, first line)."""


def _ipc_kernel_manager():
    """A kernel manager that talks to its kernel over local IPC sockets, not TCP.

    Over TCP every kernel logs "Kernel is running over TCP without encryption"; IPC sockets
    live in a private temporary folder (mode 0700) that only this user can reach.
    """
    import tempfile

    from jupyter_client.manager import KernelManager
    from traitlets import default

    class IPCKernelManager(KernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

        @default("ip")
        def _default_ip(self) -> str:
            return str(Path(tempfile.mkdtemp(prefix="vadnb-kernel-")) / "kernel")

    return IPCKernelManager


def _stopped_cell(executed: Path) -> str:
    """'cell N: first line' of the last cell that started running in ``executed``."""
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return "an unknown cell"
    started = [i for i, c in enumerate(cells)
               if c.get("cell_type") == "code" and c.get("metadata", {}).get("papermill", {}).get("start_time")]
    if not started:
        return "before its first cell"
    i = started[-1]
    first = next((line.strip() for line in "".join(cells[i]["source"]).splitlines() if line.strip()), "")
    return f"cell {i}: {first[:80]}"


def execute(notebook: Path, executed: Path, parameters: dict, cwd: Path,
            cell_timeout_s: float = CELL_TIMEOUT_S):
    """Run ``notebook`` with papermill into ``executed``; every cell has a deadline.

    Returns the executed notebook (nbformat node). Raises :class:`NotebookFailed` naming the
    notebook and the cell when a cell raises, outlives ``cell_timeout_s`` or the kernel dies.
    """
    import papermill as pm

    name = Path(notebook).stem
    try:
        return pm.execute_notebook(str(notebook), str(executed), parameters=parameters,
                                   cwd=str(cwd), kernel_name="python3", progress_bar=False,
                                   execution_timeout=cell_timeout_s,
                                   kernel_manager_class=_ipc_kernel_manager())
    except pm.PapermillExecutionError as err:
        raise NotebookFailed(f"notebook {name}, cell {err.exec_count or err.cell_index}: "
                             f"{err.ename}: {err.evalue}") from err
    except TimeoutError as err:  # nbclient's CellTimeoutError
        raise NotebookFailed(f"notebook {name}, {_stopped_cell(Path(executed))}: no result "
                             f"within {cell_timeout_s:g} s (a hang?)") from err
    except Exception as err:  # noqa: BLE001 - kernel died, notebook unreadable, ...
        raise NotebookFailed(f"notebook {name}, {_stopped_cell(Path(executed))}: "
                             f"{type(err).__name__}: {err}") from err


# --------------------------------------------------------------------------- the index page
# Everything that reaches the page is escaped (names of classes, videos, errors, metric keys,
# file names): a video called "<img src=x onerror=alert(1)>" must show as text.

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:1.2em 1.5em}
h1{margin:.2em 0}
.sub{color:#555;margin:.2em 0 1em}
.banner{background:#fde8e8;color:#8b0000;border:1px solid #8b0000;border-radius:6px;padding:.6em 1em;margin:1em 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1em}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.8em 1em;min-width:0;overflow-wrap:anywhere}
.card h2{font-size:1.05em;margin:.1em 0 .4em}
.card p{margin:.3em 0;font-size:.92em;line-height:1.35}
.status{display:inline-block;border-radius:4px;padding:0 .5em;font-size:.85em;color:#fff}
.ok{background:#2a7a4a}.failed{background:#b03030}.skipped{background:#888}
.thumbs{display:flex;gap:6px;flex-wrap:wrap;margin:.5em 0}
.thumbs img{height:84px;max-width:100%;border:1px solid #ccc;border-radius:3px;object-fit:contain;background:#fff}
.links{font-size:.88em}.links a{margin-right:.8em}
.numbers{font-size:.85em;color:#333}
.error{color:#b03030;font-size:.88em;font-family:monospace;white-space:pre-wrap}
.tablewrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.9em;background:#fff}
td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
tr.tiny td{color:#8b0000;background:#fdf0f0}
tr.upper td{color:#123e7c;background:#eef3fd;font-style:italic}
.order{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.6em 1em .6em 2.4em;margin:1em 0}
.order li{margin:.35em 0;font-size:.92em;line-height:1.35}
.where{font-size:.88em;color:#333}.where b{color:#555;font-weight:600}
"""

_BOARD_COLUMNS = ("method", "kind", "status", "profile", "videos", "frame_auc", "frame_ap",
                  "seconds", "note")
_MAX_THUMBS = 4


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _href(path: Path, run_dir: Path) -> str:
    """A relative, percent-encoded link from the index to ``path``."""
    import os
    from urllib.parse import quote

    return quote(Path(os.path.relpath(Path(path).resolve(), Path(run_dir).resolve())).as_posix())


def _about(executed: Path) -> tuple[str, str]:
    """(title, what it teaches) from the notebook's first Markdown cell."""
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
        text = next("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    except (OSError, ValueError, KeyError, StopIteration):
        return executed.stem, ""
    lines = text.strip().splitlines()
    title = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("#") else executed.stem
    paragraphs = [p.strip() for p in "\n".join(lines[1:]).split("\n\n") if p.strip()]
    teaches = " ".join(paragraphs[0].split()) if paragraphs else ""
    for p in paragraphs:  # prefer the "you will learn" list, squeezed to one line
        if "will learn" in p:
            teaches = " ".join(p.replace("- ", "· ").split())
            break
    teaches = teaches.replace("*", "").replace("`", "")
    return title, (teaches[:300].rsplit(" ", 1)[0] + " …") if len(teaches) > 300 else teaches


def _thumbnails(executed: Path, artifacts: Path, run_dir: Path) -> list[Path]:
    """The figures a notebook saved (PNG in its artifacts), else the ones its cells showed."""
    saved = sorted(artifacts.glob("*.png")) if artifacts.is_dir() else []
    if saved:
        return saved[:_MAX_THUMBS]
    import base64

    out: list[Path] = []
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return out
    folder = run_dir / "thumbnails"
    for cell in cells:
        for o in cell.get("outputs", []):
            png = o.get("data", {}).get("image/png")
            if png and len(out) < _MAX_THUMBS:
                folder.mkdir(exist_ok=True)
                path = folder / f"{executed.stem}_{len(out)}.png"
                path.write_bytes(base64.b64decode("".join(png) if isinstance(png, list) else png))
                out.append(path)
    return out


#: What each notebook teaches on a CPU (any laptop, the tiny profile) and what a GPU adds
#: (the colab profile's real models), keyed by the notebook's number: the index's reading order.
LESSONS = {
    "00": ("the task, the supervision regimes, the campus benchmark and its exact labels, "
           "and the metrics with a constant detector's floor (no model)", "the same"),
    "10": ("reading exactly the frames you think you read: probe, seeking, sampling (no model)",
           "the same"),
    "20": ("LAVAD's captioning and cleaning steps; the tiny models' captions are noise",
           "real captions of the campus clips, and their cleaning"),
    "30": ("LAVAD's summary and scoring prompts and their parsing",
           "a real LLM's summaries and anomaly scores"),
    "40": ("LAVAD's score refinement and the frame-level evaluation",
           "LAVAD's real numbers on the campus test split"),
    "50": ("AnomalyCLIP's loss terms, training loop and latent space",
           "a head trained on real CLIP features"),
    "60": ("AnyAnomaly's key frame, views and answer fusion for a typed description",
           "a real VLM answering about your description"),
    "70": ("VERA's verbalized learning loop: questions proposed, validated, kept",
           "questions learned by a real VLM"),
    "75": ("Flashback's caption memory and retrieval", "a memory written by a real LLM"),
    "80": ("the classical baseline, step by step, and a fair comparison: its row is the "
           "meaningful one", "the vision-language methods against that baseline"),
    "85": ("the classical baseline on a video of yours", "AnyAnomaly on your video with a "
           "typed description"),
    "90": ("a resumable run over a whole split, and what a benchmark would cost",
           "the same for a model method, on one GPU or many"),
}

#: Metric names shown on a card (a number's last key); counts and settings stay in the files.
_METRIC = re.compile(r"(^|_)(auc|ap)(_|$)|^mean_auc$|^frame_(auc|ap)")
#: Files whose numbers a card may show, in this order.
_NUMBER_FILES = ("metrics.json", "oracle_metrics.json", "run_summary.json")


def _leaves(d: dict, path: tuple[str, ...], meaningless: bool):
    """(path, value, meaningless) for each metric number under ``d``; a dict's own
    ``meaningless`` flag (e.g. a leaderboard row) overrides its parent's."""
    if isinstance(d.get("meaningless"), bool):
        meaningless = d["meaningless"]
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, path + (str(k),), meaningless)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and _METRIC.search(str(k)):
            yield path + (str(k),), float(v), meaningless


def _numbers(artifacts: Path) -> str:
    """The card's numbers that mean something: perfect-perception (oracle) upper bounds and
    the classical baseline's, always; a model's only when its profile has real models.

    A tiny-profile model's AUC (or ``top1_video 0.0000``) says nothing about the method, so
    the card leaves it out (it stays in the notebook's files)."""
    groups: dict[str, dict[str, list[str]]] = {}  # group -> owner (a method, or "") -> numbers
    for name in _NUMBER_FILES:
        try:
            m = json.loads((artifacts / name).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict):
            continue
        tiny = m.get("meaningless") is True or m.get("profile") == "tiny"
        for path, value, meaningless in _leaves(m, (), tiny):
            words = " ".join((name,) + path).lower()
            if "oracle" in words or "perfect" in words:
                group = "perfect perception (upper bound of the method's steps)"
            elif "classical" in words or m.get("method") == "classical":
                group = "classical baseline"
            elif not meaningless:
                group = "results"
            else:
                continue
            shown = [p for p in path if p not in ("methods", "perfect_perception", "classical")]
            owner, metric = " ".join(shown[:-1]), shown[-1]
            groups.setdefault(group, {}).setdefault(owner, []).append(f"{metric} {value:.3f}")
    # one entry per method ("lavad auc 0.790, ap 0.579"), every method: a card that stops
    # after two of five upper bounds reads as if the others had none
    return "".join("<p class='numbers'><b>" + _e(g) + "</b>: " + " · ".join(
        _e(f"{owner} {', '.join(v)}".strip()) for owner, v in owners.items()) + "</p>"
                   for g, owners in groups.items())


def _card(r: dict, run_dir: Path) -> str:
    executed = Path(r["executed"])
    artifacts = run_dir / r["notebook"]
    title, teaches = _about(executed) if executed.exists() else (r["notebook"], "")
    links = []
    if r.get("html"):
        links.append(f"<a href='{_href(Path(r['html']), run_dir)}'>read the executed lesson</a>")
    if executed.exists():
        links.append(f"<a href='{_href(executed, run_dir)}'>.ipynb</a>")
    files = sorted(p for p in artifacts.rglob("*") if p.is_file()) if artifacts.is_dir() else []
    # HTML a notebook wrote is not escaped by this page: link the data, not that
    shown_files = [p for p in files if p.parent == artifacts and p.suffix != ".html"][:10]
    artifact_links = "".join(f"<a href='{_href(p, run_dir)}'>{_e(p.name)}</a>" for p in shown_files)
    more = len(files) - len(shown_files)
    thumbs = "".join(f"<a href='{_href(p, run_dir)}'><img src='{_href(p, run_dir)}' "
                     f"alt='{_e(p.stem)}' loading='lazy'></a>"
                     for p in _thumbnails(executed, artifacts, run_dir))
    status = r["status"] if r["status"] in ("ok", "failed") else "skipped"
    error = f"<div class='error'>{_e(r['error'])}</div>" if r.get("error") else ""
    return (f"<section class='card' id='nb-{_e(r['notebook'][:2])}'><h2>{_e(title)}</h2>"
            f"<span class='status {status}'>{_e(r['status'])}</span> "
            f"<small>{r['seconds']:.0f} s</small>{error}"
            f"<p>{_e(teaches)}</p>" + _where(r["notebook"])
            + (f"<div class='thumbs'>{thumbs}</div>" if thumbs else "")
            + _numbers(artifacts)
            + f"<div class='links'>{''.join(links)}</div>"
            + (f"<div class='links'>artifacts: {artifact_links}"
               + (f" <small>(+{more} more in {_e(r['notebook'])}/)</small>" if more > 0 else "")
               + "</div>" if shown_files else "")
            + "</section>")


def _where(notebook: str) -> str:
    """What the notebook teaches on a CPU and what a GPU adds (empty for an unknown one)."""
    cpu_gpu = LESSONS.get(notebook[:2])
    if not cpu_gpu:
        return ""
    return (f"<p class='where'><b>on a CPU:</b> {_e(cpu_gpu[0])}<br>"
            f"<b>with a GPU:</b> {_e(cpu_gpu[1])}</p>")


def _reading_order(results: list[dict], run_dir: Path) -> str:
    """The notebooks in reading order, each linked to its card, with what it teaches on a CPU."""
    items = []
    for r in sorted(results, key=lambda r: r["notebook"]):
        executed = Path(r["executed"])
        title = _about(executed)[0] if executed.exists() else r["notebook"]
        cpu = LESSONS.get(r["notebook"][:2], ("", ""))[0]
        items.append(f"<li><a href='#nb-{_e(r['notebook'][:2])}'>{_e(title)}</a>"
                     + (f"<br><small>on a CPU: {_e(cpu)}</small>" if cpu else "") + "</li>")
    return ("<h2>Reading order</h2><p class='sub'>Read them in this order: each builds on the "
            "ones before. On a CPU every notebook runs with small random-init models (the "
            "<i>tiny</i> profile): the lessons show how each method works, and only the "
            "classical baseline and the perfect-perception (oracle) runs give numbers that mean "
            "something. A GPU (Colab's T4, the <i>colab</i> profile) runs real models.</p>"
            f"<ol class='order'>{''.join(items)}</ol>")


def _leaderboard(run_dir: Path) -> str:
    """Every leaderboard.csv a notebook wrote, as an escaped table of the main columns."""
    import csv

    parts = []
    for board in sorted(run_dir.glob("*/leaderboard.csv")):
        try:
            with board.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except (OSError, csv.Error):
            continue
        if not rows:
            continue
        columns = [c for c in _BOARD_COLUMNS if c in rows[0]]
        head = "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in columns)
        body = []
        for row in rows:
            tiny = str(row.get("meaningless", "")).lower() == "true"
            kind = "tiny" if tiny else "upper" if row.get("kind", "").startswith("upper") else ""
            cells = []
            for c in columns:
                v = row.get(c, "")
                try:
                    v = f"{float(v):.3f}" if c in ("frame_auc", "frame_ap") else (
                        f"{float(v):.1f}" if c == "seconds" else v)
                except ValueError:
                    pass
                cells.append(f"<td>{_e(v if v not in ('', 'nan') else '–')}</td>")
            body.append(f"<tr class='{kind}'>{''.join(cells)}</tr>")
        note = ("Red rows come from the tiny profile (random-init models): their numbers "
                "are meaningless. The classical row uses no learned model. "
                if any(str(r.get("meaningless", "")).lower() == "true" for r in rows) else "")
        if any(r.get("kind", "").startswith("upper") for r in rows):
            note += ("Blue rows are upper bounds: the method's own steps fed perfect "
                     "perception (oracle inputs), not any model's result.")
        note = f"<p>{note}</p>" if note else ""
        parts.append(f"<h2>Leaderboard <small>({_e(board.parent.name)}, all columns in "
                     f"<a href='{_href(board, run_dir)}'>{_e(board.name)}</a>)</small></h2>{note}"
                     f"<div class='tablewrap'><table><tr>{head}</tr>{''.join(body)}</table></div>")
    return "".join(parts)


def _run_profile(run_dir: Path, params: dict) -> str:
    import os

    if params.get("PROFILE"):
        return str(params["PROFILE"])
    for path in sorted(run_dir.glob("*/environment.json")) + sorted(run_dir.glob("*/metrics.json")):
        try:
            profile = json.loads(path.read_text()).get("profile")
        except (OSError, ValueError, AttributeError):
            continue
        if profile:
            return str(profile)
    return os.environ.get("VADNB_PROFILE", "auto")


def _write_index(run_dir: Path, results: list[dict], params: dict) -> Path:
    profile = _run_profile(run_dir, params)
    ok = sum(r["status"] == "ok" for r in results)
    total_s = sum(r["seconds"] for r in results)
    banner = ("<div class='banner'><b>⚠ Tiny profile.</b> This run used random-init models on "
              "a CPU: it proves every lesson runs end to end, and the models' scores mean "
              "nothing about anomalies. The cards show only numbers that do: the classical "
              "baseline's and perfect-perception upper bounds. Open a notebook on Colab with "
              "a T4 for real model numbers."
              "</div>" if profile == "tiny" else "")
    extra = {k: v for k, v in params.items() if k != "OUTPUT_DIR"}
    with_params = (" · parameters " + _e(", ".join(f"{k}={v!r}" for k, v in extra.items()))
                   if extra else "")
    cards = "".join(_card(r, run_dir) for r in results)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vadnb lessons · run {_e(run_dir.name)}</title><style>{_CSS}</style></head><body><main>
<h1>vadnb: video anomaly detection with vision-language models</h1>
<p class="sub">Run {_e(run_dir.name)} · profile {_e(profile)} · {ok} of {len(results)} notebooks
ran · {total_s / 60:.1f} min{with_params}</p>
{banner}
{_reading_order(results, run_dir)}
<h2>The notebooks of this run</h2>
<div class="cards">{cards}</div>
{_leaderboard(run_dir)}
</main></body></html>"""
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
    ap.add_argument("--cell-timeout", type=float, default=CELL_TIMEOUT_S,
                    help="seconds a cell may run before the notebook fails (default %(default)s)")
    args = ap.parse_args(argv)

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
            execute(nb, executed, {**params, "OUTPUT_DIR": str(artifacts)}, nb.parent,
                    args.cell_timeout)
            record["status"] = "ok"
        except NotebookFailed as err:
            record["status"] = "failed"
            record["error"] = str(err).removeprefix(f"notebook {nb.stem}, ")
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

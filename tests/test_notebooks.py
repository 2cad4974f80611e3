"""Hygiene of the committed notebooks, and the main job that runs them all."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_one_parameters_cell(nb):
    cells = _cells(nb)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") for c in code), f"{nb.name} has outputs: clear them"
    assert all(c.get("execution_count") is None for c in code)
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: papermill wants exactly one 'parameters' cell"
    assert "OUTPUT_DIR" in "".join(tagged[0]["source"]) and "PROFILE" in "".join(tagged[0]["source"])


#: notebooks that load no model (set-up and data, frame extraction)
MODEL_FREE = {"00", "10"}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_same_opening_everywhere(nb):
    cells = _cells(nb)
    text = ["".join(c["source"]) for c in cells]
    assert text[0].lstrip().startswith("# "), "first cell: a markdown title"
    assert any("colab.research.google.com" in t and nb.name in t for t in text[:3]), "Colab badge"
    install = next(t for t in text if "google.colab" in t)
    assert 'if "google.colab" in sys.modules' in install, "install only on Colab"
    assert "torch" not in install.replace("torch is already there", ""), "never reinstall torch on Colab"
    badge = next(t for t in text[:3] if "colab.research.google.com" in t)
    assert "T4" in badge and "approximate" in badge, "tell the student the runtime and the downloads"
    banner = any("lesson.banner(env" in t for t in text)  # (env) or (env, real=...)
    if nb.name[:2] in MODEL_FREE:  # no model runs, so no "means nothing" warning either
        assert not banner, f"{nb.name} loads no model: no tiny-profile banner"
    else:
        assert banner, "one tiny-profile banner (vadnb.lesson.banner)"
    assert any(f'lesson.references("{nb.name[:2]}")' in t for t in text), "cite the papers"
    assert any("vadnb.setup(" in t for t in text), "calls vadnb.setup(...)"
    assert any(t.lstrip().startswith(("## Summary", "# Summary")) for t in text), "closing summary"
    assert any("Exercise" in t for t in text), "exercises"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_cell_is_safe_to_rerun(nb, monkeypatch):
    """Run the install cell twice as Colab would: one clone, then none (the folder exists)."""
    import os
    import subprocess as sp
    import types

    install = next("".join(c["source"]) for c in _cells(nb) if "google.colab" in "".join(c["source"]))
    calls, cloned = [], set()
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sp, "run", lambda cmd, **kw: (calls.append(cmd), cloned.update(
        [cmd[-1]] if cmd[:2] == ["git", "clone"] else [])))
    monkeypatch.setattr(os.path, "isdir", lambda p: any(str(p).startswith(c) for c in cloned))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for _ in range(2):
        exec(compile(install, nb.name, "exec"), {})
    clones = [c for c in calls if c[:2] == ["git", "clone"]]
    assert len(clones) == 1, f"{nb.name}: re-running the Colab cell clones again: {calls}"
    assert sys.path.count("/content/vadnb") == 1
    assert all("torch" not in " ".join(c) for c in calls), "never pin or reinstall torch"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_jupytext_pair_in_sync(nb):
    import jupytext

    py = nb.with_suffix(".py")
    assert py.exists(), f"{py.name} missing: notebooks are reviewed as jupytext percent files"
    from_py = jupytext.read(py)
    from_nb = jupytext.read(nb)
    src = lambda n: [(c.cell_type, c.source.strip()) for c in n.cells]  # noqa: E731
    assert src(from_py) == src(from_nb), (
        f"{nb.name} and {py.name} differ: run `jupytext --to ipynb {py}`")


EVIL = "<img src=x onerror=alert(1)>"


def test_main_job_reports_failing_notebook_and_cell(tmp_path):
    """The main job exits non-zero naming the notebook and the failing cell."""
    import nbformat

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    ok = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(f"# 00 · A fine lesson\n\nIt teaches {EVIL}."),
        nbformat.v4.new_code_cell("PROFILE = None\nOUTPUT_DIR = 'x'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import json, pathlib\np = pathlib.Path(OUTPUT_DIR); p.mkdir(parents=True, exist_ok=True)\n"
            f"(p / 'metrics.json').write_text(json.dumps({{'auc': 0.75, {EVIL!r}: 1.0, 'profile': 'tiny', "
            "'perfect_perception': {'mean_auc': 0.9}}))\n"
            "(p / 'leaderboard.csv').write_text('method,status,profile,frame_auc,meaningless\\n'\n"
            f"    'classical-row,ok,none,0.61,False\\n{EVIL},ok,tiny,0.5,True\\n')\n"
            "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
            "fig = plt.figure(figsize=(2, 1)); fig.savefig(p / 'a figure.png')")])
    bad = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("PROFILE = None\nOUTPUT_DIR = 'x'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell(f"raise RuntimeError('planted failure {EVIL}')")])
    for name, nb in [("00_fine.ipynb", ok), ("10_broken.ipynb", bad)]:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbdir / name)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_notebooks.py"), "--notebooks", str(nbdir),
         "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[1/2] 00_fine" in proc.stdout and "[2/2] 10_broken" in proc.stdout
    assert "FAILED: notebook 10_broken" in proc.stderr
    assert "RuntimeError: planted failure" in proc.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    index = (run_dir / "index.html").read_text()
    assert "A fine lesson" in index and "failed" in index
    # a tiny model's number is dropped from the card; a perfect-perception bound is shown
    assert "auc 0.75" not in index and "mean_auc 0.900" in index and "perfect perception" in index
    assert "Reading order" in index and "href='#nb-00'" in index and "on a CPU:" in index
    assert "Leaderboard" in index and "classical-row" in index and "0.610" in index
    assert "Parameters: {}" not in index and "Tiny profile" in index
    # issue 15: a name that is HTML must arrive as text, never as a tag
    assert EVIL not in index and "&lt;img src=x onerror=alert(1)&gt;" in index
    assert "a%20figure.png" in index  # the saved figure is a thumbnail, its link encoded
    assert (run_dir / "00_fine" / "metrics.json").exists()
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["status"] for r in results] == ["ok", "failed"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_understands_every_parameter(nb, caplog):
    """papermill must parse each parameter line (an '=' in a comment confuses it)."""
    import logging

    import papermill as pm

    with caplog.at_level(logging.WARNING):
        params = pm.inspect_notebook(str(nb))
    assert "PROFILE" in params and "OUTPUT_DIR" in params
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]


def test_readme_lists_every_reference_of_vadnb_lesson():
    from vadnb.lesson import REFERENCES

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## References"):]
    for ref in REFERENCES.values():
        assert ref.title in section and ref.arxiv_url in section and ref.code in section


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_header_lists_every_download_and_opens_on_a_gpu(nb):
    """The header's download sentence is generated from the profile table and the registry
    (notebook 20 once omitted the LLM its lavad.run loads); Colab opens it on a T4."""
    import textwrap

    from notebook_audit import download_note

    meta = json.loads(nb.read_text())["metadata"]
    assert meta.get("accelerator") == "GPU" and meta.get("colab", {}).get("gpuType") == "T4"
    badge = next("".join(c["source"]) for c in _cells(nb)[:3]
                 if "colab.research.google.com" in "".join(c["source"]))
    note = download_note(nb.name[:2])
    assert " ".join(badge.split()).find(" ".join(note.split())) >= 0, (
        f"{nb.name}: the header must say, word for word:\n" + textwrap.fill(note, 92))
    install = next("".join(c["source"]) for c in _cells(nb) if "google.colab" in "".join(c["source"]))
    assert '"--no-deps", "imagebind-unofficial==0.1.1"' in install  # no decord (no arm64 wheel)
    if nb.name[:2] not in ("00", "10"):  # the notebooks that download models
        assert install.lstrip().startswith("KEEP_ON_DRIVE = False")
        assert f'keep_on_drive("{nb.name[:2]}")' in install


def _run_notebooks_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_notebooks", REPO / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_index_card_shows_every_upper_bound_and_blue_upper_rows(tmp_path):
    """Notebook 80 saves five perfect-perception bounds: the card showed the first two and
    dropped the rest; the leaderboard's upper-bound rows looked like model rows (issue 25)."""
    rn = _run_notebooks_module()
    art = tmp_path / "80_compare_methods"
    art.mkdir()
    bounds = {m: {"meaningless": False, "auc": 0.5 + k / 10, "ap": 0.4 + k / 10}
              for k, m in enumerate(["lavad", "anomalyclip", "vera", "anyanomaly", "flashback"])}
    (art / "metrics.json").write_text(json.dumps({
        "profile": "tiny", "methods": {"classical": {"meaningless": False, "auc": 0.697},
                                       "vera": {"meaningless": True, "auc": 0.123}},
        "perfect_perception": bounds}))
    card = rn._numbers(art)
    for k, m in enumerate(bounds):
        assert f"{m} auc {0.5 + k / 10:.3f}, ap {0.4 + k / 10:.3f}" in card
    assert "auc 0.697" in card and "0.123" not in card  # the tiny model's number stays out
    (art / "leaderboard.csv").write_text(
        "method,kind,status,profile,frame_auc,meaningless\n"
        "classical,this run,ok,none,0.697,False\nvera,this run,ok,tiny,0.5,True\n"
        "vera,upper bound (perfect perception),ok,scripted,0.821,False\n")
    board = rn._leaderboard(tmp_path)
    assert [c for c in re.findall(r"<tr class='(\w*)'>", board)] == ["", "tiny", "upper"]
    assert "Blue rows are upper bounds" in board and "Red rows" in board

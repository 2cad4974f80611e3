# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   accelerator: GPU
#   colab:
#     gpuType: T4
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Set-up and data: the environment, the campus benchmark, the public benchmarks
#
# Before any model looks at a video we need two things we can trust: an environment that
# says what it is running on, and data whose labels say exactly which frames are anomalous.
#
# In this notebook you will learn:
# - what `vadnb.setup()` chooses for you (device, model profile, cache folder) and why the
#   **tiny** profile's scores are meaningless;
# - the *campus* mini-benchmark shipped with the suite: real footage, planted anomalies of
#   four classes, exact frame labels, train / val / test splits;
# - how a benchmark looks in code: a `Benchmark` with a video table and `frame_labels(name)`;
# - how the public benchmarks (UCF-Crime, XD-Violence, ShanghaiTech, Avenue, UBnormal) are
#   laid out on disk, and how to point the suite at your copy.
#
# Where it sits: the first notebook. `10_frame_extraction` reads frames from these clips;
# every method notebook (20-70) scores them against these labels.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/00_setup_and_data.ipynb)
#
# **On Colab**: choose a GPU first (Runtime › Change runtime type › **T4 GPU**), then run
# the cells in order; the next cell installs the suite (a minute or two) and is safe to re-run.
# This notebook downloads no model (approximate size: 0 GB). The campus clips ship with the
# suite.

# %%
import sys
if "google.colab" in sys.modules:  # on Colab only: fetch the suite once, install it (torch is already there)
    import os
    import subprocess
    if not os.path.isdir("/content/vadnb/.git"):  # safe to re-run: clone only once
        subprocess.run(["git", "clone", "-q", "--depth", "1", "https://github.com/vadnb/vadnb", "/content/vadnb"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/vadnb[imagebind]"], check=True)
    # ImageBind's model code only (its data loaders need decord: vadnb.models.imagebind.IMAGEBIND_PIP)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "imagebind-unofficial==0.1.1"], check=True)
    if "/content/vadnb" not in sys.path:
        sys.path.insert(0, "/content/vadnb")

# %% tags=["parameters"]
PROFILE = None             # "tiny", "colab", "paper" or None (then $VADNB_PROFILE, else auto)
OUTPUT_DIR = "outputs/00"  # campus_videos.csv, class_examples.png, environment.json go here
CAMPUS_ROOT = None         # None: $VADNB_DATA/campus, else the repository's data/campus
VERIFY_CHECKSUMS = True    # check every campus clip against SHA256SUMS (a second or two)
ZOOM_FRAMES = 8            # frames shown around the start of one anomaly
# Your copies of the public benchmarks (None = skip). See the last section.
UCF_CRIME_ROOT = None
XD_VIOLENCE_ROOT = None
SHANGHAITECH_ROOT = None
AVENUE_ROOT = None
UBNORMAL_ROOT = None

# %%
import os
import platform
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import vadnb
from vadnb import data, plots, video
from vadnb.plots import contact_sheet

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)

# %%
from vadnb import lesson

lesson.references("00")  # no tiny-profile banner: this notebook loads no model

# %% [markdown]
# ## 0. The task: video anomaly detection
#
# A camera watches a scene; most of what it sees is **normal** for that scene (people walking
# across a campus). **Video anomaly detection (VAD)** gives every frame a score saying how
# much it departs from normal (a van driving over the lawn, someone falling), so that a person
# can be sent to the few moments that matter. Anomalies are rare, varied and defined by the
# scene (running is normal on a track), so no one can list them all in advance: what a method
# is allowed to learn from decides how it works. The research field has four regimes:
#
# | regime | what the method learns from | in this suite |
# |---|---|---|
# | **one-class** | normal videos only: whatever looks unlike them is anomalous | the classical baseline with normal reference clips (80); ShanghaiTech's and Avenue's own splits |
# | **weakly supervised** | video-level labels ("this video contains an anomaly somewhere"), no frame labels; usually multiple-instance learning (MIL) | AnomalyCLIP (50); VERA learns its questions from such labels (70); UCF-Crime, XD-Violence |
# | **training-free** | nothing: pretrained models describe and judge the frames | LAVAD (20-40), Flashback (75) |
# | **user-defined** (customizable, C-VAD) | nothing but a description the user types of what to look for | AnyAnomaly (60) on C-ShT / C-Ave |
#
# The contestants, side by side (notebook 80 runs them on the same clips):
#
# | method | learns from | models it calls (roles) | one call looks at |
# |---|---|---|---|
# | classical | nothing (the video's own statistics, or normal clips of the same camera) | none: OpenCV background subtraction, optical flow, a HOG people detector | every frame |
# | LAVAD | nothing (training-free) | captioner, embedder, LLM | a caption per 16 frames; an LLM summary and score per position |
# | AnomalyCLIP | video-level labels of the train split | CLIP image encoder, then a small trained head | every frame (its head scores the whole video at once) |
# | AnyAnomaly | nothing; you type what to look for | CLIP (key frames, windows), VLM | one key frame, its best window and a 2x2 grid per 24-frame segment |
# | VERA | video-level labels (it learns *questions*, notebook 70) | VLM, embedder | 8 frames of a 10-second window per 16-frame segment |
# | Flashback | nothing (training-free) | LLM (writes a caption memory once), embedder | one 1-second segment, matched against the memory |
#
# **How a detector is scored.** The benchmarks label every frame 0 (normal) or 1
# (anomalous). The frames of all test videos are concatenated into one long label array and
# one long score array, and one number is computed over them (**micro-averaged**, not a mean
# of per-video numbers): the **frame-level ROC AUC** (the chance that a random anomalous frame
# scores above a random normal one; 0.5 is chance) and the **average precision (AP)** (area
# under the precision-recall curve; chance is the share of anomalous frames). AP comes in two
# variants, and the one XD-Violence and LAVAD report (the trapezoid area) gives a detector
# that knows nothing a generous number: section 5 computes it on the campus labels.
# The words used across the suite are in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).

# %% [markdown]
# ## 1. The environment
#
# `vadnb.setup()` is the first call of every notebook. It picks the **device** (a CUDA GPU
# if there is one, else the CPU), the **model profile**, seeds the random generators, and
# prints them in one line with the **cache folder** where expensive results (captions,
# embeddings, model replies) are kept so that a re-run costs nothing; the `report()` of what
# it returns lists each role's dtype and every library version.
#
# The profile decides which models load:
# - `tiny`: small random-initialised models built offline. They exercise every line of the
#   pipelines in seconds on a CPU, and their **scores are meaningless**. CI runs this.
# - `colab`: real, small-enough models for a free Colab GPU.
# - `paper`: the models the papers used (large GPUs).
#
# We save what was chosen, so a result can always be traced back to its environment.

# %%
environment = {
    "device": env.device,
    "profile": env.profile,
    "scores_meaningless": env.meaningless,
    "cache_dir": str(env.cache_dir),
    "python": platform.python_version(),
    "platform": platform.platform(),
    "versions": env.versions,
    "VADNB_DATA": os.environ.get("VADNB_DATA"),
}
_ = lesson.save_metrics(out / "environment.json", environment)  # valid JSON, one call

# %% [markdown]
# ## 2. The campus mini-benchmark
#
# Public VAD benchmarks are large (UCF-Crime is ~100 GB) and need registration, so the
# suite ships its own small one. Its 16 clips (12-16 s, 384x288, 10 fps) are cut from
# `vtest.avi`, a real fixed-camera recording of people walking on a campus that comes with
# OpenCV. Into some clips, `scripts/make_campus.py` plants one anomaly with soft-edged,
# perspective-scaled cut-outs:
#
# | class | what happens |
# |---|---|
# | Vehicle | a van drives over the lawn and the pedestrian plaza |
# | Running | a person runs across, about four times walking speed |
# | Fallen | a person falls, lies on the ground for ~4 s, gets up |
# | Object left | a box appears on the path and stays |
#
# Because we planted them, we know the anomalous frames **exactly**.
# `load_campus` returns a `Benchmark`; `verify=True` checks each clip's SHA-256 first.

# %%
campus = data.load_campus(CAMPUS_ROOT, verify=VERIFY_CHECKSUMS)
print(campus)
campus.videos

# %% [markdown]
# Every clip belongs to one split. Methods that learn (AnomalyCLIP, VERA) may look at
# `train` (and `val`) with **video-level** labels only; all methods are scored on `test`.
# Train and test both contain every class and normal clips; the splits come from
# disjoint stretches of the source recording.

# %%
pd.crosstab(campus.videos["label"], campus.videos["split"])[["train", "val", "test"]]

# %% [markdown]
# The frame labels are a 0/1 array per clip. The annotation file gives each anomaly as an
# inclusive `start end` frame pair (UCF-Crime style); `frame_labels` expands it, one entry
# per decodable frame. We store the intervals next to the table in `campus_videos.csv`.

# %%
def label_intervals(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1s as inclusive (start, end) frame pairs."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], labels, [0]]).astype(int)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


table = campus.videos.copy()
table["intervals"] = [label_intervals(campus.frame_labels(n)) for n in table["name"]]
table["anomalous_s"] = [campus.frame_labels(n).sum() / fps for n, fps in zip(table["name"], table["fps"])]
table.drop(columns="path").to_csv(out / "campus_videos.csv", index=False)
seconds = table.num_frames / table.fps
lesson.say(f"{len(table)} clips, {seconds.sum() / 60:.1f} minutes in all; "
           f"{table.anomalous_s.sum() / seconds.sum():.1%} of the frames are anomalous "
           f"(UCF-Crime's test set: about 8 %).")
table[["name", "split", "label", "num_frames", "intervals", "anomalous_s"]]

# %% [markdown]
# One check worth making on any benchmark: the labels have exactly as many entries as the
# video has **decodable** frames (container headers sometimes claim otherwise;
# notebook 10 shows why). `video.probe` decodes the file to count them.

# %%
name = "test_running_01"
info = video.probe(campus.path(name))
labels = campus.frame_labels(name)
print(f"{name}: {info.num_frames} decodable frames, {len(labels)} labels, "
      f"anomalous frames {label_intervals(labels)}")
assert info.num_frames == len(labels)

# %% [markdown]
# ## 3. What each class looks like
#
# One frame from the middle of the anomaly of one clip per class (the test clip), and a
# normal frame for comparison. Look for the van, the runner, the person lying on the plaza
# and the box: these are what a vision-language model has to notice.

# %%
test = campus.subset("test")
examples, captions = [], []
for label in ["Normal"] + campus.classes:
    name = test.videos.loc[test.videos["label"] == label, "name"].iloc[0]
    labels = test.frame_labels(name)
    frame = int(np.flatnonzero(labels).mean()) if labels.any() else len(labels) // 2
    image = video.read_frames(test.path(name), indices=[frame]).images[0]
    examples.append(image)
    captions.append(f"{label} · {name} · frame {frame}")
fig = contact_sheet(examples, labels=captions, cols=3, title="campus test clips: one frame per class")
fig.savefig(out / "class_examples.png", dpi=110, bbox_inches="tight")
plt.show()

# %% [markdown]
# A single frame can hide the anomaly: a runner looks like a walker in a still picture.
# Here are frames around the start of the **Running** anomaly, three frames apart: the
# runner crosses much more ground per frame than anyone else. The yellow box is drawn by
# code, not by hand: `plots.fastest_mover_boxes` links the blobs that differ from the clip's
# median frame into tracks and marks the fastest one. It knows nothing about people: in a
# frame where it cannot follow the runner (hidden by, or merged with, another person), it
# draws no box.

# %%
name = test.videos.loc[test.videos["label"] == "Running", "name"].iloc[0]
labels = test.frame_labels(name)
fps = float(test.videos.set_index("name").loc[name, "fps"])
start = int(np.argmax(labels))
indices = [min(len(labels) - 1, start - 3 + 3 * k) for k in range(ZOOM_FRAMES)]
clip = video.read_frames(test.path(name)).images  # the whole clip: its median is the background
runner = plots.fastest_mover_boxes(clip, indices)   # the fastest-moving blob, frame by frame
fig = contact_sheet(clip[indices], boxes=runner, box_label="runner",
                    labels=[f"frame {i} · {i / fps:.1f} s · {'ANOMALY' if labels[i] else 'normal'}"
                            for i in indices],
                    cols=4, title=f"{name}: around the start of the anomaly (frame {start}); "
                                  "yellow: the fastest mover")
fig.savefig(out / "running_strip.png", dpi=90)
plt.show()

# %% [markdown]
# ## 4. Label timelines of the test clips
#
# Each row is a test clip; red spans are the anomalous frames. This is the ground truth
# that every method's frame scores are compared with (frame-level ROC AUC, notebook 40).

# %%
fig, ax = plt.subplots(figsize=(9, 0.45 * len(test) + 0.8))
for row, (name, labels) in enumerate(test.all_frame_labels().items()):
    fps = float(test.videos.set_index("name").loc[name, "fps"])
    ax.broken_barh([(0, len(labels) / fps)], (row - 0.3, 0.6), color="0.85")
    spans = [(s / fps, (e - s + 1) / fps) for s, e in label_intervals(labels)]
    ax.broken_barh(spans, (row - 0.3, 0.6), color="tab:red")
ax.set_yticks(range(len(test)), [f"{n} ({c})" for n, c in test.video_classes().items()])
ax.invert_yaxis()
ax.set_xlabel("time (s)")
ax.set_title("campus test split: anomalous frames in red")
fig.tight_layout()
fig.savefig(out / "label_timelines.png", dpi=110)
plt.show()

# %% [markdown]
# ## 5. Scoring against these labels: AUC, AP, and a detector that knows nothing
#
# `vadnb.metrics` computes the micro-averaged metrics from the labels above and a method's
# frame scores. Two detectors bracket every real one: a **perfect** one (its scores are the
# labels) and a **constant** one (the same score for every frame: it knows nothing). The
# constant detector's AUC is chance and its step-wise AP is the share of anomalous frames;
# its trapezoid AP is higher, because the trapezoid rule joins the precision-recall curve's
# first point (recall 0, precision 1 by convention) straight to its only other point.

# %%
from vadnb import metrics

truth = test.all_frame_labels()
detectors = {"perfect (scores = labels)": {n: y.astype(float) for n, y in truth.items()},
             "constant (0.5 everywhere)": {n: np.full(len(y), 0.5) for n, y in truth.items()}}
scored = pd.DataFrame([{"detector": name, "frame AUC": metrics.frame_auc(truth, s),
                        metrics.ap_name("sklearn"): metrics.frame_ap(truth, s),
                        metrics.ap_name("trapezoid"): metrics.frame_ap(truth, s, variant="trapezoid")}
                       for name, s in detectors.items()]).set_index("detector")
share = np.concatenate(list(truth.values())).mean()
lesson.say(f"{share:.1%} of the campus test frames are anomalous. The constant detector earns "
           f"AUC {scored.iloc[1, 0]:.3f}, step-wise AP {scored.iloc[1, 1]:.3f} and trapezoid AP "
           f"{scored.iloc[1, 2]:.3f}: an AP must be read against that floor.")
scored.round(3)

# %% [markdown]
# ## 6. The public benchmarks, and how to point the suite at them
#
# The methods in this suite were published with results on public benchmarks. They are
# not shipped (size, licences), but `vadnb.data` reads each one from the files its authors
# distribute, and returns the same `Benchmark` as the campus data, so every notebook and
# `vadnb.run_dataset` work on them unchanged. Download a benchmark yourself, then pass its
# folder to its loader (or set `VADNB_DATA` to a folder holding them). This table says what
# to download, which files each loader reads (relative to the folder you pass), and the call:

# %%
layouts = pd.DataFrame(data.SAMPLE_LAYOUTS).T.rename_axis("benchmark")
layouts.style.set_properties(**{"text-align": "left", "white-space": "pre-wrap"})

# %% [markdown]
# Three things differ between benchmarks, and the loaders make them explicit:
#
# - **Splits.** UCF-Crime and XD-Violence have train and test; a validation split is carved
#   from train, class-stratified and reproducible (`val=0.1`, VERA's 1449 / 161), or taken
#   from a list you give. ShanghaiTech has two: its own *one-class* split (train is normal
#   only) and the *weakly supervised* split of Zhong et al. (2019), which moves anomalous
#   videos into training (`split="weak"`).
# - **Labels.** Test videos have one 0/1 label per frame. Anomalous *training* videos of the
#   weakly supervised benchmarks carry only a video-level label: that is all weak supervision
#   (notebook 50) needs, and `bench.has_frame_labels(name)` is False for them.
# - **Containers.** ShanghaiTech's test set (and the methods' own releases) are folders of
#   numbered images rather than video files; the suite reads both.
#
# Each benchmark is far too large to ship, but its *layout* is small: `data.write_sample`
# writes a few tiny synthetic videos under the exact file names, in the exact annotation
# formats. Below, each benchmark you configured in the parameters cell (`UCF_CRIME_ROOT`,
# ...) is loaded from your copy; the others from such a sample, so you see what the loader
# returns before downloading anything. **Sample counts describe those toy files, not the
# benchmark.**

# %%
samples_dir = out / "benchmark_samples"
your_copies = {"ucf_crime": UCF_CRIME_ROOT, "xd_violence": XD_VIOLENCE_ROOT,
               "shanghaitech": SHANGHAITECH_ROOT, "avenue": AVENUE_ROOT, "ubnormal": UBNORMAL_ROOT}
loaders = {"ucf_crime": data.load_ucf_crime, "xd_violence": data.load_xd_violence,
           "shanghaitech": data.load_shanghaitech, "avenue": data.load_avenue,
           "ubnormal": data.load_ubnormal}
summaries = []
for key, load in loaders.items():
    root = your_copies[key]
    source = "your copy" if root else "sample layout"
    bench = load(root if root else data.write_sample(key, samples_dir / key))
    summaries.append(bench.summary().assign(benchmark=key, source=source))
summary = pd.concat(summaries).set_index(["benchmark", "source", "split"])
summary.to_csv(out / "benchmark_summaries.csv")
summary

# %% [markdown]
# A loader's result is the same object as the campus benchmark's: here the UCF-Crime
# layout's video table, and the error you get when asking for frame labels that a weakly
# supervised benchmark does not have:

# %%
ucf = data.load_ucf_crime(UCF_CRIME_ROOT or samples_dir / "ucf_crime")
display(ucf.videos[["name", "split", "label", "is_anomalous", "num_frames"]].head(8))
weak_only = [n for n in ucf.videos["name"] if not ucf.has_frame_labels(n)]
try:
    ucf.frame_labels(weak_only[0])
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ShanghaiTech's weakly supervised split takes two list files (the plain names of
# `SH_Train_new.txt` / `SH_Test_NEW.txt`, or AnomalyCLIP's rows, which also give each video
# one of the 17 classes):

# %%
sht_root = Path(SHANGHAITECH_ROOT or samples_dir / "shanghaitech")
if (sht_root / "SH_Train_new.txt").exists():
    weak = data.load_shanghaitech(sht_root, split="weak", train_list=sht_root / "SH_Train_new.txt",
                                  test_list=sht_root / "SH_Test_NEW.txt")
    display(weak.summary())
else:
    print(f"no SH_Train_new.txt / SH_Test_NEW.txt in {sht_root}: put the weak split's lists there")

# %% [markdown]
# ### Customizable VAD: C-ShT and C-Ave
#
# AnyAnomaly (notebook 60) is evaluated per anomaly *type* that a user could type: its
# repository ships one label file per type (`ground_truth/c-shtech_labels/shtech_car_label.h5`
# ...), covering every ShanghaiTech (or Avenue) test video, with that type's frames as 1 and
# every other type's as 0. `data.load_cvad` turns one type into a Benchmark over the
# dataset's test frames, here on the sample:

# %%
cvad_root = data.write_sample("c_shtech", samples_dir / "c_shtech")
car = data.load_cvad(cvad_root / "ground_truth", dataset="shanghaitech", anomaly_type="car",
                     videos_root=cvad_root / "testing" / "frames")
display(car.summary())
print("types in this ground-truth folder:", data.cvad_types(cvad_root / "ground_truth", "shanghaitech"))

# %% [markdown]
# ### The methods' own annotation files
#
# LAVAD and VERA converted the annotations into files of their own, next to frame folders
# they extracted. If you followed one of their READMEs you may have those instead of the
# originals: `data.load_lavad_annotations` and `data.load_vera_annotations` read them and
# give the same labels (the test below checks this on the samples).

# %%
lavad_root = data.write_sample("lavad_files", samples_dir / "lavad_files")
vera_root = data.write_sample("vera_files", samples_dir / "vera_files")
ann = lavad_root / "annotations"
converted = {
    "LAVAD test.txt": data.load_lavad_annotations(
        ann / "test.txt", ann / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
        frames_root=lavad_root / "frames"),
    "VERA UCF_Eval.json": data.load_vera_annotations(vera_root / "Data" / "UCF_Eval.json",
                                                     videos_root=vera_root),
}
original = data.load_ucf_crime(samples_dir / "ucf_crime").subset("test")
for title, bench in converted.items():
    same = all(np.array_equal(bench.frame_labels(n), original.frame_labels(n))
               for n in bench.videos["name"])
    print(f"{title:20s} {len(bench)} videos; frame labels equal to the original annotation's: {same}")

# %% [markdown]
# ### What to reproduce
#
# Which method the papers evaluated on which benchmark, with which protocol, and the number
# each paper reported (the papers' numbers, not measured here). Notebook 90 shows this
# table again beside the suite's own results.

# %%
protocols = data.protocol_table()
protocols.to_csv(out / "protocols.csv", index=False)
protocols.drop(columns=["load"])

# %% [markdown]
# A malformed line raises `data.AnnotationError` naming the file, the line and the
# expected format. The campus annotation file uses the UCF-Crime format, so you can see
# that parser at work on it right now:

# %%
parsed = data.parse_ucf_annotations(campus.root / "annotations.txt")
dict(list(parsed.items())[3:6])

# %% [markdown]
# ## Summary
#
# - VAD scores every frame by how far it departs from normal; what a method may learn from
#   (one-class, weakly supervised, training-free, user-defined) decides how it works.
# - Detectors are scored by frame-level micro AUC and AP; a constant detector sets the floor
#   (chance AUC, and a trapezoid AP well above the share of anomalous frames).
# - `vadnb.setup()` fixes device, profile, seeds and cache folder once; the tiny profile runs
#   everything quickly with random models whose scores mean nothing.
# - The campus benchmark: 16 real clips, four planted anomaly classes with exact frame
#   labels, train / val / test splits with every class in train and test.
# - A `Benchmark` is a table (`videos`) plus `frame_labels(name)`; `subset(split)`,
#   `all_frame_labels()` and `video_classes()` feed the metrics directly.
# - The public benchmarks load into the same object from their own formats, with their
#   train / val / test splits; weakly labelled training videos say so instead of guessing.
# - The methods' converted annotation files (LAVAD, VERA) load too, with the same labels.
#
# ## Exercises
#
# 1. Which split holds the most anomalous seconds? Compute it from `campus_videos.csv`.
# 2. Open `data/campus/preview.png` and one clip of each class in a video player. Which
#    anomaly would *you* miss in a single frame? Which would a captioning model miss?
# 3. Change one line of a copy of `annotations.txt` (e.g. drop a field) and load it with
#    `data.load_campus(copy_folder)`: read the error message. Is it enough to fix the file?
# 4. The Fallen label starts when the fall starts. Argue for and against starting it when
#    the person is lying still instead. How would frame-level AUC change?
# 5. If you have UCF-Crime, load it and count the test videos per class.
# 6. Load the UCF-Crime sample with `val=0.5` and two seeds. Which videos move? Why must the
#    validation split never be chosen by looking at test results?

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
# # 10 · Frame extraction: reading the frames you think you read
#
# Every method in this suite turns a video into frames before anything clever happens:
# LAVAD captions one frame in 16, AnomalyCLIP embeds every frame, AnyAnomaly and VERA look at
# a handful per segment. Benchmarks then score each method **frame by frame** against labels
# such as "frames 1200 to 1450 are anomalous". If the picture we call frame 1200 is really
# frame 1203, every number downstream is quietly wrong.
#
# In this notebook you will learn:
# - how `vadnb.video` decodes a video, and what `probe` tells you about it;
# - the difference between sampling **by fps** (evenly in time) and **by stride**
#   (every k-th frame);
# - why frame indices must come from a sequential decode, shown on files whose headers lie;
# - how the probe is cached, so counting frames exactly costs one pass per file, ever;
# - what sampling saves in time, measured (and when it saves little).
#
# Where it sits: after `00_setup_and_data` (the environment and the campus benchmark) and
# before `20_captioning_and_cleaning`, which captions the frames read here.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vadnb/vadnb/blob/main/notebooks/10_frame_extraction.ipynb)
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
PROFILE = None            # model profile; this notebook loads no model, setup() just reports it
OUTPUT_DIR = "outputs/10"  # frames_index.csv, contact_sheet.png, timings.json go here
VIDEO = None              # a video path; None: the first campus test clip (else a generated one)
SAMPLE_FPS = 1.0          # frames per second to sample
STRIDE = 16               # the stride LAVAD uses, for comparison
SHEET_FRAMES = 12         # frames on the contact sheet
TIMING_REPEAT = 3         # runs per timing (the fastest is kept)

# %%
import dataclasses
import time
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import vadnb
from vadnb import video
from vadnb.cache import Cache
from vadnb import plots
from vadnb.plots import contact_sheet

env = vadnb.setup(PROFILE)
out = Path(OUTPUT_DIR)
out.mkdir(parents=True, exist_ok=True)


# %%
from vadnb import lesson

lesson.references("10")  # no tiny-profile banner: this notebook loads no model

# %% [markdown]
# ## The video
#
# By default we use the first test clip of the bundled *campus* benchmark (notebook 00).
# If the data is not there, OpenCV's sample clip `vtest.avi` (when installed), else a clip the
# notebook writes itself: 12 seconds of frames that each show **their own index** as a bar
# code (a colour key on top, 12 black-or-white bits below, the number printed in the corner).
# `video.read_frame_code(image)` reads that number back; we use such clips below to check
# which frame a reader really returned.


# %%
def campus_clip() -> Path | None:
    try:
        from vadnb.data import load_campus

        return Path(load_campus().subset("test").videos.path.iloc[0])
    except Exception as err:  # no data or no loader yet: fall back to a generated clip
        print(f"campus data not available ({type(err).__name__}: {err})")
        return None


VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")  # apt install opencv-doc
clip = Path(VIDEO) if VIDEO else campus_clip()
if clip is None and VTEST.exists():
    clip = VTEST
if clip is None:
    clip = video.write_test_video(out / "generated_clip.mp4", num_frames=300, fps=25,
                                  size=(320, 240))
print("video:", clip)

# %% [markdown]
# ## Decoding, and what `probe` tells you
#
# A video file is a **container** (MP4, AVI, MKV, MPEG-TS) holding a compressed **stream**.
# The container also stores a header with a frame count, a frame rate and, for each compressed
# frame, a *presentation timestamp* (when to show it). A decoder walks the stream and hands
# out pictures in presentation order.
#
# `video.probe` decodes the file once from start to end and counts what comes out. That count
# is the truth; the header's claim is kept next to it (`header_frames`) so we can compare.

# %%
info = video.probe(clip)
pd.Series(dataclasses.asdict(info)).to_frame("value")

# %% [markdown]
# `frame_times` gives every frame's presentation time, relative to the first frame. For a
# constant-rate video the gaps between frames are all `1 / fps`:

# %%
times = video.frame_times(clip)
gaps_ms = np.diff(times) * 1000
print(f"{len(times)} frames; gap between frames: min {gaps_ms.min():.2f} ms, "
      f"max {gaps_ms.max():.2f} ms (1 / fps = {1000 / info.fps:.2f} ms)")

# %% [markdown]
# `read_frames` returns a `Frames`: `images` (uint8 RGB, `[N, H, W, 3]`), `indices` (each
# image's position in the sequential decode) and `timestamps_s`. Ask for any indices, in any
# order:

# %%
n = info.num_frames
first_middle_last = video.read_frames(clip, indices=[n - 1, 0, n // 2])
print(first_middle_last.images.shape, first_middle_last.indices,
      first_middle_last.timestamps_s.round(2))

# %% [markdown]
# ## Sampling by fps, or by stride
#
# Two ways to take fewer frames:
# - **stride** `k`: frames `0, k, 2k, ...` (LAVAD captions every 16th frame). Simple, but how
#   much *time* lies between two samples depends on the video's frame rate.
# - **fps** `x`: for each multiple of `1 / x` seconds, the first frame at or after it. The
#   samples are evenly spaced in time, whatever the frame rate, using the real timestamps.
#
# On a constant-rate video both are regular. The difference shows on a **variable-frame-rate**
# video (phones record these): here is a clip whose frames come in bursts.

# %%
rng = np.random.default_rng(0)
vfr_gaps = rng.choice([10, 40, 120], size=59, p=[0.4, 0.4, 0.2])  # ms between frames
vfr_pts = np.concatenate([[0], np.cumsum(vfr_gaps)])
vfr_clip = video.write_test_video(out / "vfr_clip.mkv", num_frames=60, pts=vfr_pts.tolist(),
                                  time_base=1 / 1000)
vfr_times = video.frame_times(vfr_clip)
by_stride = np.arange(0, len(vfr_times), 6)
by_fps = video.sample_indices(vfr_times, fps=2)
print(f"{len(vfr_times)} frames over {vfr_times[-1]:.2f} s")
print("stride 6 ->", by_stride.tolist())
print("fps 2    ->", by_fps.tolist())

# %%
fig, ax = plt.subplots(figsize=(9, 2.2))
ax.eventplot([vfr_times, vfr_times[by_stride], vfr_times[by_fps]], colors=["0.7", "C1", "C0"],
             lineoffsets=[2, 1, 0], linelengths=0.8)
ax.set_yticks([2, 1, 0], ["all frames", "stride 6", "fps 2"])
ax.set_xlabel("time (s)")
ax.set_title("Stride follows the frames; fps follows the clock")
plt.show()

# %% [markdown]
# The stride samples bunch up where frames come fast and leave long holes where they come
# slowly; the fps samples sit at (or just after) every half second. When a method's window is
# defined in seconds ("10 s around the centre frame"), fps sampling is the one that means it.

# %% [markdown]
# ## Why the indices must be exact
#
# The tempting way to read "frame 300" is to seek there: `cap.set(cv2.CAP_PROP_POS_FRAMES, 300)`.
# And the tempting way to know the length is `cv2.CAP_PROP_FRAME_COUNT`. Both trust the file.
# Let us build a file that lies: a 60-frame AVI whose header says 444 frames.
# (The real-world version: an AVI written by a recorder that crashed, or copied by a tool
# that never fixed the header.)

# %%
lying = video.write_test_video(out / "lying.avi", num_frames=60, fps=25)
video.patch_avi_frame_count(lying, claimed=444)
cap = cv2.VideoCapture(str(lying))
print("cv2.CAP_PROP_FRAME_COUNT:", int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
cap.release()
lying_info = video.probe(lying)
print("probe: num_frames =", lying_info.num_frames, "| header_frames =", lying_info.header_frames)


# %% [markdown]
# Now sample 8 frames evenly over "the whole video", once trusting the header and seeking, once
# with `probe` and `read_frames`. Each frame shows its own index, so we can read what we got.

# %%
def read_by_seeking(path, indices):
    """The tempting way: seek to each index and read one frame; returns what each shows."""
    cap = cv2.VideoCapture(str(path))
    shown = []
    for i in indices:
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
        ok, bgr = cap.read()
        shown.append(video.read_frame_code(bgr[..., ::-1]) if ok else "read failed")
    cap.release()
    return shown


header_count = 444
asked = np.linspace(0, header_count - 1, 8).round().astype(int)
exact = np.linspace(0, lying_info.num_frames - 1, 8).round().astype(int)
pd.DataFrame({
    "asked (header count)": asked,
    "seek shows": read_by_seeking(lying, asked),
    "asked (probe count)": exact,
    "read_frames shows": [video.read_frame_code(im)
                          for im in video.read_frames(lying, indices=exact).images],
})

# %% [markdown]
# Trusting the header, 7 of the 8 reads fail: they ask for frames that do not exist, and the
# clip's second half never gets looked at. With `probe`'s count every read lands.
#
# Seeking can also land on the **wrong** frame without failing. MPEG-TS files (broadcast
# recordings, many camera exports) start at a non-zero time and have no frame index; OpenCV
# turns a frame number into a time with the nominal rate and jumps to the nearest key frame:

# %%
ts_clip = video.write_test_video(out / "late_start.ts", num_frames=60, fps=25,
                                 pts=list(range(250, 310)))  # starts at 10 s
asked = [3, 8, 14, 19, 33]
pd.DataFrame({"asked": asked, "seek shows": read_by_seeking(ts_clip, asked),
              "read_frames shows": [video.read_frame_code(im)
                                    for im in video.read_frames(ts_clip, indices=asked).images]})

# %% [markdown]
# (Which frames seeking gets wrong depends on the OpenCV/FFmpeg version and the file; that is
# exactly the problem.) `read_frames` names every frame by its position in a sequential
# decode. Reading in order, it decodes every frame, which is cheap, and converts to an image
# only the frames you asked for, which is what costs.
#
# `probe` also records every frame's timestamp and which frames are key frames. To read a few
# frames far apart, `read_frames` seeks to the key frame before each one, decodes forward and
# names each decoded frame by its timestamp, checking it against that record (on any mismatch
# it decodes sequentially instead, so the answer never changes). A seek only pays when it
# skips many frames (more than 64 here) past a key frame, so it needs key frames to land on.
# We write a 500-frame clip with a key frame every 50 frames, read two frames far apart, and
# count: `decode_stats()` the frames decoded, `seek_stats()` the seeks.

# %%
def read_far(path, indices):
    """Read ``indices``; return the images, frames decoded and seeks made (the probe's own
    pass, once per file, is made first and not counted)."""
    video.probe(path)
    video.reset_decode_stats()
    shown = video.read_frames(path, indices=indices).images
    return shown, video.decode_stats()["frames_decoded"], video.seek_stats()["seeks"]


keyed = video.write_test_video(out / "key_every_50.mp4", num_frames=500, fps=25, size=(160, 96),
                               options={"g": "50", "sc_threshold": "0"})  # a key frame every 50
far = [499, 270]
shown, decoded, seeks = read_far(keyed, far)
print(f"code clip, frames {far}: {seeks} seek(s), {decoded} frames decoded "
      f"(a sequential read decodes {max(far) + 1}); the frames show "
      f"{[video.read_frame_code(im) for im in shown]}")
far_campus = [n - 1, n // 2]
_, decoded, seeks = read_far(clip, far_campus)
print(f"{clip.name}, frames {far_campus}: {seeks} seek(s), {decoded} frames decoded "
      f"(a sequential read decodes {max(far_campus) + 1})")

# %% [markdown]
# The second line is the clip we sampled above: when it has no key frame far enough past the
# start to be worth a jump, `read_frames` simply decodes forward, and the seek count says so.

# %% [markdown]
# ## Caching the probe
#
# Counting exactly costs one pass over the file. `probe` therefore stores its result in the
# suite's cache (`vadnb.cache`), keyed by a hash of the file's **content**: renaming or copying
# the video keeps the entry, changing a byte invalidates it. We use a fresh cache folder here
# so the first call is really cold.

# %%
probe_cache = Cache(out / "probe_cache")
probe_cache.clear()
start = time.perf_counter()
video.probe(clip, cache=probe_cache)
probe_cold_s = time.perf_counter() - start
start = time.perf_counter()
video.probe(clip, cache=probe_cache)
probe_cached_s = time.perf_counter() - start
print(f"first probe {probe_cold_s * 1000:.1f} ms, second {probe_cached_s * 1000:.1f} ms "
      f"(hits {probe_cache.hits}, misses {probe_cache.misses})")
probe_cache.report()

# %% [markdown]
# ## Sampled frames, on a contact sheet
#
# Now the real work: sample the video at `SAMPLE_FPS` and keep the index and time of every
# sampled frame (`frames_index.csv`; later notebooks key captions and scores by these indices).

# %%
sampled = video.read_frames(clip, fps=SAMPLE_FPS)
index_table = pd.DataFrame({"index": sampled.indices, "timestamp_s": sampled.timestamps_s})
index_table.to_csv(out / "frames_index.csv", index=False)
print(f"{len(sampled)} frames sampled at {SAMPLE_FPS} fps from {info.num_frames}")
index_table.head()

# %%
try:  # a campus clip has frame labels: show where its anomaly lies among the samples
    from vadnb.data import load_campus

    truth = load_campus().frame_labels(clip.stem)
except Exception:  # noqa: BLE001 - your own video, or no campus data: no ground truth
    truth = None
sheet = plots.sampling_figure(info.num_frames, info.fps, sampled, labels=truth,
                              thumbs=min(SHEET_FRAMES, 6),
                              title=f"{clip.name}: {len(sampled)} of {info.num_frames} frames kept "
                                    f"at {SAMPLE_FPS:g} fps")
sheet.savefig(out / "contact_sheet.png", dpi=100)
plt.show()
inside = 0 if truth is None else int(truth[np.asarray(sampled.indices)].sum())
lesson.say(f"At {SAMPLE_FPS:g} fps, {len(sampled)} of {info.num_frames} frames are kept"
           + ("." if truth is None or not truth.any() else
              f"; {inside} of them fall inside the anomaly ({int(truth.sum())} frames long)."))

# %% [markdown]
# `extract_frames` writes sampled frames as JPEG files named by their source index, for
# tools that want files rather than arrays:

# %%
jpegs = video.extract_frames(clip, out / "frames", fps=SAMPLE_FPS, quality=90)
print(len(jpegs), "files, e.g.", [p.name for p in jpegs[:3]])

# %% [markdown]
# ## Frame folders are videos too
#
# Several benchmarks (ShanghaiTech, Avenue) ship each video as a folder of numbered images.
# `vadnb.video` reads such a folder like a file, at `frame_rate` frames per second (30 when not
# given, and `fps_from` says so). When the names are numbered (`img_004.png`), a frame's index
# is its number counted from the first, so an image missing from the numbering is a *lost*
# frame (warned, and listed in `lost_ranges`) and every other frame keeps its true index;
# names without a common numbering are read in natural order (`2.jpg` before `10.jpg`).
#
# The JPEGs just written form one, with a twist: `extract_frames` also wrote a manifest
# (`frames.json`) listing the source indices it sampled, so the gaps between them are
# sampling, not loss, and each image keeps its index in the *video*:

# %%
folder = out / "frames"
folder_info = video.probe(folder, frame_rate=SAMPLE_FPS)
last_image = video.read_frames(folder, indices=[int(sampled.indices[-1])], frame_rate=SAMPLE_FPS)
print(len(video.folder_images(folder)), "images,", folder_info.width, "x", folder_info.height,
      "; lost frames:", folder_info.lost_frames)
print("the folder's frame", int(last_image.indices[0]), "is the video's frame",
      int(sampled.indices[-1]), "; mean pixel difference (JPEG):",
      float(np.abs(last_image.images[0].astype(int) - sampled.images[-1]).mean().round(2)))

# %% [markdown]
# ## What sampling saves
#
# Sampling at 1 fps still grabs every frame (that is what keeps it exact), but converts only
# one frame per second into an image. How much does that save against converting every frame?
# On a short, small clip the conversions are cheap and fixed costs (opening the file) weigh
# as much, and on a busy laptop one timing can be off by a factor of two, so each is the
# fastest of `TIMING_REPEAT` runs; the line under the table says what this run measured.
# (The probe is cached by now, so it is not in either number; `benchmarks/bench_video.py`
# measures the same on any file.)


# %%
def fastest(fn, repeat=TIMING_REPEAT):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


fps_s = fastest(lambda: video.read_frames(clip, fps=SAMPLE_FPS))
every_s = fastest(lambda: sum(len(c) for c in video.iter_frames(clip, chunk=64)))
timings = {"video": str(clip), "num_frames": info.num_frames, "sampled_frames": len(sampled),
           "sample_fps": SAMPLE_FPS, "probe_cold_s": probe_cold_s,
           "probe_cached_s": probe_cached_s, "read_fps_s": fps_s, "every_frame_s": every_s,
           "every_over_fps": every_s / fps_s}
lesson.save_metrics(out / "timings.json", timings)
lesson.say(f"Sampling at {SAMPLE_FPS:g} fps took {fps_s:.3f} s, converting all "
           f"{info.num_frames} frames {every_s:.3f} s: sampling was "
           + (f"{every_s / fps_s:.1f}x faster here." if every_s > fps_s else
              "not faster here (fixed costs, or a busy machine, outweighed the conversions saved)."))
pd.Series(timings).to_frame("value")

# %% [markdown]
# Every frame goes through `iter_frames`, which yields chunks of 64 frames: reading a long
# video whole would need (frames × height × width × 3) bytes of memory at once.

# %% [markdown]
# ## Summary
#
# - A frame's index is its position in a **sequential decode**. `probe` counts frames that way
#   (and remembers the header's claim), `read_frames` reads that way: exact on the MPEG-TS
#   with a late start, the AVI whose header lies and the variable-frame-rate clip above (the
#   tests in `tests/test_video.py` check MP4s whose edit list hides frames too).
# - Reading a few frames far apart seeks to the key frame before each and decodes forward,
#   checked against the probe's record: the same frames as a sequential read, fewer decoded.
# - Sample **by fps** to be even in time; a **stride** is even in frames, which is only even
#   in time when the frame rate is constant.
# - Seeking and `CAP_PROP_FRAME_COUNT` trust the file, so what they report is the file's
#   claim, not the truth; compare them with the sequential count in the table above.
# - The exact count costs one pass per file, once: the probe is cached by the file's content.
# - Sampling saves the image conversions, not the decoding; `iter_frames` keeps memory small.
#
# ## Exercises
#
# 1. Sample the variable-frame-rate clip at 5 fps and at stride 3. Plot the gaps (in seconds)
#    between consecutive samples of each. Which one would you use for a 10-second window?
# 2. Copy `lying.avi` under a new name and probe it again. Is it a cache hit? Now flip one byte
#    near the end of the copy and probe once more. What happens, and why is that right?
# 3. Run `python benchmarks/bench_video.py` on a video of your own, then with `--fps 0.2`.
#    How does the saving change, and why does it never reach `fps_native / SAMPLE_FPS`?
# 4. Cut the last third off a copy of `vfr_clip.mkv`
#    (`cut.write_bytes(data[: 2 * len(data) // 3])`) and call `video.probe` on it. Read the
#    error: does it say how many frames were readable, and what to do?

# %% [markdown]
# *The words used here are defined once, in the [glossary](https://github.com/vadnb/vadnb/blob/main/README.md#glossary).*

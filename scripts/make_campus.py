#!/usr/bin/env python
"""Build the "campus" mini-benchmark in ``data/campus/`` from real footage.

The source is ``vtest.avi``, a real fixed-camera clip of pedestrians walking on a campus
(768x576, 10 fps, 795 frames) shipped with OpenCV's samples. On Debian/Ubuntu get it with::

    sudo apt-get install opencv-doc
    # -> /usr/share/doc/opencv-doc/examples/data/vtest.avi

(or download ``samples/data/vtest.avi`` from the OpenCV repository and pass ``--source``).

What the script does, step by step:

1. decode every source frame and estimate the empty scene as the per-pixel median;
2. find the real pedestrians (foreground blobs) and follow them frame to frame, which gives
   cut-outs ("sprites") with soft masks and a perspective model (a person's height in
   pixels as a linear function of where their feet are);
3. cut a parked white van out of the median background and a box out of OpenCV's
   ``box.png``;
4. for each clip in ``CLIPS``: copy a window of source frames (mirrored for some clips),
   paste the planted anomaly (a van driving over the lawn, a person running, a person who
   falls and lies on the ground, a box left on the path), keeping real pedestrians who are
   nearer the camera in front of it and the lamp post in front of what is behind it;
5. downscale to 384x288, encode H.264 (libx264, yuv420p) with PyAV, decode the file back
   and check that the number of decodable frames equals the number of frame labels;
6. write ``annotations.txt`` (UCF-Crime temporal style), ``splits/``, ``classes.txt``,
   ``SHA256SUMS`` and ``preview.png``.

A frame is labelled anomalous when the planted event is happening in it: for "Vehicle",
"Running" and "Object left" when at least ``MIN_VISIBLE_PX`` pixels (full resolution,
alpha-weighted) of the planted thing are visible; for "Fallen" from the first frame of the
fall to the last frame of getting up. Deterministic: same source + same seed = same labels
(x264 runs single-threaded so the bytes are stable for a given library version).

Usage::

    python scripts/make_campus.py                       # writes data/campus/
    python scripts/make_campus.py --out /tmp/campus --source path/to/vtest.avi
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
DEFAULT_BOX = Path("/usr/share/doc/opencv-doc/examples/data/box.png")
FPS = 10
OUT_SIZE = (384, 288)  # (width, height) of the written clips
MIN_VISIBLE_PX = 40  # full-resolution pixels of a planted thing that make a frame anomalous
CLASSES = ["Vehicle", "Running", "Fallen", "Object left"]


# --------------------------------------------------------------------------------------
# The clips: which source frames, mirrored or not, and what is planted where.
# Coordinates are full-resolution (768x576) points where feet / wheels touch the ground,
# in the UNmirrored source; the script mirrors them for mirrored clips.
# Source ranges per split are disjoint: train 0-329, val 330-479, test 480-794.
# --------------------------------------------------------------------------------------


@dataclass
class ClipSpec:
    name: str
    split: str
    start: int  # first source frame
    length: int  # number of frames
    mirror: bool = False
    kind: str = "Normal"  # "Normal" or one of CLASSES
    params: dict = field(default_factory=dict)


CLIPS: list[ClipSpec] = [
    # ---- train: source frames 0..329
    ClipSpec("train_normal_01", "train", 0, 150),
    ClipSpec("train_normal_02", "train", 170, 150, mirror=True),
    ClipSpec("train_normal_03", "train", 80, 120, mirror=True),
    ClipSpec("train_vehicle_01", "train", 20, 140, kind="Vehicle",
             params=dict(enter=35, path=[(370, 640), (305, 330), (150, 175), (-120, 150)], speed=0.15)),
    ClipSpec("train_running_01", "train", 150, 130, mirror=True, kind="Running",
             params=dict(enter=45, track=(195, 248, 197), path=[(-40, 262), (820, 305)], speed=0.30)),
    ClipSpec("train_fallen_01", "train", 40, 160, kind="Fallen",
             params=dict(enter=10, track=(218, 369, 168), path=[(820, 300), (-40, 250)], speed=0.075,
                         fall_at_x=420, lie=45)),
    ClipSpec("train_object_01", "train", 190, 140, mirror=True, kind="Object left",
             params=dict(enter=55, at=(250, 300))),
    # ---- val: source frames 330..479
    ClipSpec("val_normal_01", "val", 330, 150),
    ClipSpec("val_running_01", "val", 335, 140, mirror=True, kind="Running",
             params=dict(enter=60, track=(404, 296, 207), path=[(820, 240), (-40, 280)], speed=0.28)),
    ClipSpec("val_fallen_01", "val", 340, 140, kind="Fallen",
             params=dict(enter=5, track=(404, 573, 138), path=[(-40, 280), (820, 330)], speed=0.075,
                         fall_at_x=300, lie=40)),
    # ---- test: source frames 480..794
    ClipSpec("test_normal_01", "test", 480, 150),
    ClipSpec("test_normal_02", "test", 640, 150, mirror=True),
    ClipSpec("test_vehicle_01", "test", 500, 150, mirror=True, kind="Vehicle",
             params=dict(enter=50, path=[(330, 640), (300, 320), (120, 165), (-120, 140)], speed=0.15)),
    ClipSpec("test_running_01", "test", 560, 140, kind="Running",
             params=dict(enter=40, track=(480, 406, 223), path=[(-40, 300), (820, 255)], speed=0.32)),
    ClipSpec("test_fallen_01", "test", 650, 145, mirror=True, kind="Fallen",
             params=dict(enter=15, track=(636, 640, 220), path=[(-40, 300), (820, 330)], speed=0.08,
                         fall_at_x=330, lie=40)),
    ClipSpec("test_object_01", "test", 600, 150, kind="Object left",
             params=dict(enter=60, at=(560, 300))),
]


# --------------------------------------------------------------------------------------
# Source, background and pedestrians
# --------------------------------------------------------------------------------------


def read_source(path: Path) -> np.ndarray:
    """All frames of the source video as uint8 RGB [N, H, W, 3]."""
    if not path.exists():
        sys.exit(f"source video not found: {path}\n"
                 "Get it with `sudo apt-get install opencv-doc` (Debian/Ubuntu) or download "
                 "samples/data/vtest.avi from https://github.com/opencv/opencv and pass --source.")
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def foreground_mask(frame: np.ndarray, background: np.ndarray, threshold: int = 35) -> np.ndarray:
    """0/1 mask of pixels that differ from the empty scene (people, mostly)."""
    diff = np.abs(frame.astype(np.int16) - background.astype(np.int16)).max(axis=2)
    mask = (diff > threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 15)))


def person_blobs(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """Connected components shaped like a standing person: (label image, [(id, x, y, w, h)])."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    blobs = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area > 150 and h > 1.5 * w and h >= 30:
            blobs.append((i, x, y, w, h))
    return labels, blobs


def track_people(frames: np.ndarray, background: np.ndarray, min_len: int = 25) -> list[list[tuple]]:
    """Greedy frame-to-frame tracking of person blobs: a list of tracks [(t, x, y, w, h)]."""
    finished, active = [], []
    for t, frame in enumerate(frames):
        _, blobs = person_blobs(foreground_mask(frame, background))
        used, still = set(), []
        for track in active:
            _, x, y, w, h = track[-1]
            best, best_d = None, 15.0
            for j, (_, X, Y, W, H) in enumerate(blobs):
                d = abs((X + W / 2) - (x + w / 2)) + abs((Y + H) - (y + h))
                if j not in used and d < best_d and abs(H - h) < 0.25 * h:
                    best, best_d = j, d
            if best is None:
                finished.append(track)
            else:
                used.add(best)
                track.append((t, *blobs[best][1:]))
                still.append(track)
        still += [[(t, *b[1:])] for j, b in enumerate(blobs) if j not in used]
        active = still
    return [tr for tr in finished + active if len(tr) >= min_len]


def fit_height_model(tracks: list[list[tuple]]) -> tuple[float, float]:
    """Person height in pixels as ``a + b * y_feet`` (robust least squares over all blobs)."""
    ys = np.array([y + h for tr in tracks for (_, _, y, _, h) in tr], float)
    hs = np.array([h for tr in tracks for (_, _, _, _, h) in tr], float)
    keep = np.ones(len(ys), bool)
    for _ in range(3):
        b, a = np.polyfit(ys[keep], hs[keep], 1)
        keep = np.abs(hs - (a + b * ys)) < 0.15 * (a + b * ys)
    return float(a), float(b)


@dataclass
class Sprite:
    rgba: np.ndarray  # float32 [h, w, 4], colour 0..255, alpha 0..1
    anchor: tuple[float, float]  # (x, y) ground-contact point inside rgba
    ref_height: float  # what "height" means for this sprite: the height model at its source


def soft_alpha(mask: np.ndarray, sigma: float = 1.2) -> np.ndarray:
    """Binary mask -> soft alpha: fill holes, shrink by a pixel, feather the edge."""
    mask = mask.astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    filled = cv2.erode(filled, np.ones((3, 3), np.uint8))
    return cv2.GaussianBlur(filled.astype(np.float32), (0, 0), sigma)


def cut_person(frame: np.ndarray, background: np.ndarray, box: tuple, height_at) -> Sprite:
    """The person whose blob has bounding box ``box`` = (x, y, w, h), as a soft sprite."""
    labels, blobs = person_blobs(foreground_mask(frame, background))
    x, y, w, h = box
    ids = [i for (i, X, Y, W, H) in blobs if (X, Y, W, H) == (x, y, w, h)]
    pad = 4
    y0, y1 = max(0, y - pad), min(frame.shape[0], y + h + pad)
    x0, x1 = max(0, x - pad), min(frame.shape[1], x + w + pad)
    alpha = soft_alpha(labels[y0:y1, x0:x1] == ids[0])
    rgba = np.dstack([frame[y0:y1, x0:x1].astype(np.float32), alpha])
    return Sprite(rgba, (x + w / 2 - x0, y + h - y0), height_at(y + h))


def find_track(tracks: list[list[tuple]], t: int, x: int, y: int) -> list[tuple]:
    """The track with a blob at frame ``t`` whose top-left corner is nearest (x, y)."""
    best, best_d = None, 1e9
    for tr in tracks:
        for (tt, X, Y, _, _) in tr:
            if tt == t and abs(X - x) + abs(Y - y) < best_d:
                best, best_d = tr, abs(X - x) + abs(Y - y)
    if best is None or best_d > 40:
        raise RuntimeError(f"no pedestrian track near ({x}, {y}) at frame {t}: was the source changed?")
    return best


def cut_van(background: np.ndarray, height_at) -> Sprite:
    """The white van parked at the top right of the scene, cut from the empty background."""
    x0, y0, x1, y1 = 640, 36, 732, 104
    crop = background[y0:y1, x0:x1]
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    body = ((hsv[..., 2] > 165) & (hsv[..., 1] < 60)).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(body)
    body = (lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    ys, xs = np.nonzero(body)
    # the wheels and bumper are dark: extend the body down to the wheels' bottom
    bottom = int(ys.max()) + 6
    mask = np.zeros_like(body)
    points = np.column_stack([xs, ys]).astype(np.int32)
    points = np.vstack([points, [[xs.min() + 2, bottom], [xs.max() - 2, bottom]]]).astype(np.int32)
    cv2.fillConvexPoly(mask, cv2.convexHull(points), 1)
    alpha = soft_alpha(mask, sigma=1.0)
    rgba = np.dstack([crop.astype(np.float32), alpha])
    return Sprite(rgba, ((xs.min() + xs.max()) / 2, bottom), height_at(y0 + bottom) * 1.15)


def box_sprite(path: Path) -> Sprite:
    """A cardboard-coloured box from OpenCV's ``box.png`` (a photo of a packet of biscuits)."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        sys.exit(f"box image not found: {path} (it ships with opencv-doc, like vtest.avi)")
    mask = (grey > 40).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    grey = grey[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    tint = np.array([0.80, 0.66, 0.48], np.float32)  # cardboard brown, darkened to the scene
    rgb = 40 + grey[..., None] * tint
    alpha = soft_alpha(np.pad(np.ones_like(grey, np.uint8), 2)[2:-2, 2:-2], sigma=0.8)
    h, w = grey.shape
    return Sprite(np.dstack([rgb, alpha]), (w / 2, h), float(h))


# --------------------------------------------------------------------------------------
# Compositing
# --------------------------------------------------------------------------------------

# Thin things in the scene that stand in front of anything whose feet are above (behind)
# their base: (x0, y0, x1, y1, base_y) in full resolution, unmirrored.
OCCLUDERS = [(424, 30, 438, 392, 392),  # lamp post
             (410, 200, 446, 246, 392)]  # the sign on it


class Canvas:
    """One full-resolution frame being composited, plus what stays in front of pastes."""

    def __init__(self, frame: np.ndarray, background: np.ndarray, mirror: bool):
        self.original = frame
        self.image = frame.astype(np.float32)
        self.mirror = mirror
        self.labels, self.blobs = person_blobs(foreground_mask(frame, background))

    def x(self, x: float) -> float:
        """A point's x in this canvas (mirrored clips mirror the scene)."""
        return self.image.shape[1] - 1 - x if self.mirror else x

    def paste(self, sprite: Sprite, x: float, y: float, height: float, angle: float = 0.0,
              flip: bool = False, shadow: float = 0.0) -> float:
        """Paste ``sprite`` with its anchor at (x, y) (canvas coordinates), scaled to ``height``.

        ``angle`` rotates (degrees, counter-clockwise) about the anchor; ``flip`` mirrors the
        sprite; ``shadow`` darkens a soft ellipse under it. Returns the visible alpha sum.
        """
        s = height / sprite.ref_height
        rgba = sprite.rgba[:, ::-1] if flip else sprite.rgba
        ax, ay = sprite.anchor
        if flip:
            ax = rgba.shape[1] - 1 - ax
        H, W = self.image.shape[:2]
        matrix = cv2.getRotationMatrix2D((ax, ay), angle, s)
        matrix[:, 2] += (x - ax, y - ay)
        warped = cv2.warpAffine(rgba, matrix, (W, H), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        alpha = warped[..., 3:4]
        if shadow > 0:
            footprint = np.zeros((H, W), np.float32)
            width = max(4, int(0.5 * s * rgba.shape[1]))
            cv2.ellipse(footprint, (int(x), int(y)), (width, max(2, width // 5)), 0, 0, 360, 1.0, -1)
            footprint = cv2.GaussianBlur(footprint, (0, 0), max(1.0, width / 6))[..., None]
            self.image *= 1 - shadow * footprint * (1 - alpha)
        self.image = self.image * (1 - alpha) + warped[..., :3] * alpha
        self._restore_front(y)
        return float(alpha.sum())

    def _restore_front(self, feet_y: float) -> None:
        """Put back real pedestrians and posts that are nearer the camera than ``feet_y``."""
        front = np.zeros(self.image.shape[:2], bool)
        for (i, _, y, _, h) in self.blobs:
            if y + h > feet_y + 3:
                front |= self.labels == i
        for (x0, y0, x1, y1, base) in OCCLUDERS:
            if feet_y < base:
                a, b = sorted((int(self.x(x0)), int(self.x(x1))))
                front[y0:y1, a:b + 1] = True
        self.image[front] = self.original[front]

    def result(self) -> np.ndarray:
        return np.clip(self.image + 0.5, 0, 255).astype(np.uint8)


def along(path: list[tuple[float, float]], distance: float) -> tuple[float, float] | None:
    """The point ``distance`` pixels along a polyline, or None past its end."""
    for (x0, y0), (x1, y1) in zip(path, path[1:]):
        seg = math.hypot(x1 - x0, y1 - y0)
        if distance <= seg:
            f = distance / seg
            return x0 + f * (x1 - x0), y0 + f * (y1 - y0)
        distance -= seg
    return None


# --------------------------------------------------------------------------------------
# The four kinds of planted anomaly. Each paints into the canvases and returns 0/1 labels.
# --------------------------------------------------------------------------------------


def plant_vehicle(canvases, p, ctx) -> np.ndarray:
    """The van drives in from the bottom edge, over the lawn and the path, and away."""
    labels = np.zeros(len(canvases), np.uint8)
    travelled = 0.0
    for j in range(p["enter"], len(canvases)):
        point = along(p["path"], travelled)
        if point is None:
            break
        c = canvases[j]
        height = ctx["van"].ref_height * ctx["height_at"](point[1]) / ctx["height_at"](ctx["van_y"])
        visible = c.paste(ctx["van"], c.x(point[0]), point[1], height, shadow=0.45)
        labels[j] = visible >= MIN_VISIBLE_PX
        travelled += p["speed"] * ctx["height_at"](point[1])
    return labels


def _walker(canvases, p, ctx, fall: bool) -> np.ndarray:
    """A real pedestrian's walk cycle moved along ``path``; optionally falls and lies down."""
    track = ctx["tracks"][p["track"]]
    sprites = ctx["sprites"][p["track"]]
    labels = np.zeros(len(canvases), np.uint8)
    (sx0, _), (sx1, _) = p["path"][0], p["path"][-1]
    src_dx = track[-1][1] - track[0][1]
    turn = (sx1 - sx0) * src_dx < 0  # the source person walked the other way
    cycle_rate = 1.0 if fall else 3.0  # a runner's legs move about three times as fast
    travelled, phase = 0.0, 0.0
    fall_start, lie_end = None, None
    for j in range(p["enter"], len(canvases)):
        point = along(p["path"], travelled)
        if point is None:
            break
        c = canvases[j]
        x, y = point
        angle = 0.0
        moving = True
        if fall:
            if fall_start is None and (x - p["fall_at_x"]) * (sx1 - sx0) >= 0:
                fall_start = j
                lie_end = j + 4 + p["lie"]
            if fall_start is not None and j <= lie_end + 4:
                k = j - fall_start
                tilt = min(k + 1, 4, lie_end + 5 - j) / 4.0  # 0 standing .. 1 lying
                direction = 1 if (sx1 - sx0) < 0 else -1  # fall forwards
                angle = direction * 84 * tilt
                moving = False
                labels[j] = 1
        index = int(phase) % len(sprites)
        flip = turn != c.mirror
        height = ctx["height_at"](y)
        visible = c.paste(sprites[index], c.x(x), y, height, angle=-angle if c.mirror else angle,
                          flip=flip, shadow=0.25)
        if not fall:
            labels[j] = visible >= MIN_VISIBLE_PX
        if moving:
            travelled += p["speed"] * height
            phase += cycle_rate
    return labels


def plant_running(canvases, p, ctx) -> np.ndarray:
    return _walker(canvases, p, ctx, fall=False)


def plant_fallen(canvases, p, ctx) -> np.ndarray:
    return _walker(canvases, p, ctx, fall=True)


def plant_object(canvases, p, ctx) -> np.ndarray:
    """A box appears on the ground (fading in over two frames) and stays."""
    labels = np.zeros(len(canvases), np.uint8)
    x, y = p["at"]
    height = 0.45 * ctx["height_at"](y)
    for j in range(p["enter"], len(canvases)):
        c = canvases[j]
        sprite = ctx["box"]
        if j - p["enter"] < 2:  # fade in
            sprite = Sprite(sprite.rgba * np.array([1, 1, 1, (j - p["enter"] + 1) / 3], np.float32),
                            sprite.anchor, sprite.ref_height)
        visible = c.paste(sprite, c.x(x), y, height, shadow=0.5)
        labels[j] = visible >= MIN_VISIBLE_PX
    return labels


PLANTERS = {"Vehicle": plant_vehicle, "Running": plant_running,
            "Fallen": plant_fallen, "Object left": plant_object}


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def encode(frames: list[np.ndarray], path: Path, crf: int) -> int:
    """Write RGB frames as H.264 MP4 at FPS; return the number of frames decoded back."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium", "threads": "1"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def intervals(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1s as inclusive (start, end) frame pairs."""
    padded = np.concatenate([[0], labels.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="path to vtest.avi")
    parser.add_argument("--box", type=Path, default=DEFAULT_BOX, help="path to OpenCV's box.png")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "campus", help="output folder")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality (lower = bigger files)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the small random jitters")
    parser.add_argument("--only", nargs="*", help="build only these clip names (for iterating)")
    args = parser.parse_args(argv)

    print(f"reading {args.source}")
    source = read_source(args.source)
    background = np.median(source[::4], axis=0).astype(np.uint8)
    print("tracking pedestrians")
    tracks = track_people(source, background)
    a, b = fit_height_model(tracks)
    print(f"  {len(tracks)} tracks; person height ~ {a:.1f} + {b:.3f} * y_feet px")

    def height_at(y: float) -> float:
        return max(8.0, a + b * y)

    ctx = {"height_at": height_at, "tracks": {}, "sprites": {}, "box": box_sprite(args.box)}
    van = cut_van(background, height_at)
    ctx["van"], ctx["van_y"] = van, 36 + van.anchor[1]
    for spec in CLIPS:
        key = spec.params.get("track")
        if key and key not in ctx["tracks"]:
            track = find_track(tracks, *key)
            ctx["tracks"][key] = [(t, x, y, w, h) for (t, x, y, w, h) in track]
            ctx["sprites"][key] = [cut_person(source[t], background, (x, y, w, h), height_at)
                                   for (t, x, y, w, h) in track]

    out = args.out
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "splits").mkdir(exist_ok=True)
    rows, previews = [], []
    for number, spec in enumerate(CLIPS):
        if args.only and spec.name not in args.only:
            continue
        rng = np.random.default_rng([args.seed, number])  # per clip: --only gives the same bytes
        window = source[spec.start:spec.start + spec.length]
        assert len(window) == spec.length, f"{spec.name}: source too short"
        frames = [f[:, ::-1] if spec.mirror else f for f in window]
        canvases = [Canvas(np.ascontiguousarray(f), background[:, ::-1] if spec.mirror else background,
                           spec.mirror) for f in frames]
        if spec.kind == "Normal":
            labels = np.zeros(spec.length, np.uint8)
        else:
            labels = PLANTERS[spec.kind](canvases, spec.params, ctx)
        # a whisper of sensor noise so pasted pixels share the clip's grain
        images = []
        for c in canvases:
            image = c.result()
            if spec.kind != "Normal":
                noise = rng.normal(0, 1.5, image.shape)
                image = np.clip(image + noise, 0, 255).astype(np.uint8)
            images.append(cv2.resize(image, OUT_SIZE, interpolation=cv2.INTER_AREA))
        path = out / "videos" / f"{spec.name}.mp4"
        decoded = encode(images, path, args.crf)
        if decoded != len(labels):
            sys.exit(f"{path}: {decoded} decodable frames but {len(labels)} labels")
        runs = intervals(labels)
        if spec.kind != "Normal":
            if not runs:
                sys.exit(f"{spec.name}: the planted {spec.kind} is never visible")
            mid = (runs[0][0] + runs[0][1]) // 2
            previews.append((spec.name, spec.kind, runs, images[mid]))
        rows.append((spec, runs))
        print(f"  {spec.name:18s} {spec.split:5s} {spec.kind:12s} {len(labels)} frames {runs}")

    if args.only:
        write_preview(previews, out / "preview.png")
        return
    write_metadata(out, rows)
    write_preview(previews, out / "preview.png")
    print(f"wrote {len(rows)} clips to {out}")


def write_metadata(out: Path, rows: list[tuple[ClipSpec, list[tuple[int, int]]]]) -> None:
    """annotations.txt, splits/*.txt, classes.txt and SHA256SUMS."""
    lines = []
    for spec, runs in rows:
        if len(runs) > 2:
            raise ValueError(f"{spec.name}: {len(runs)} intervals; the format holds at most two")
        numbers = [v for run in runs for v in run] + [-1] * (4 - 2 * len(runs))
        label = spec.kind.replace(" ", "_") if spec.kind != "Normal" else "Normal"
        lines.append(f"{spec.name}.mp4  {label}  " + "  ".join(str(v) for v in numbers))
    (out / "annotations.txt").write_text("\n".join(lines) + "\n")
    for split in ("train", "val", "test"):
        names = [f"{s.name}.mp4" for s, _ in rows if s.split == split]
        (out / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    (out / "classes.txt").write_text("\n".join(c.replace(" ", "_") for c in CLASSES) + "\n")
    sums = [f"{sha256(out / 'videos' / f'{s.name}.mp4')}  videos/{s.name}.mp4" for s, _ in rows]
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")


def write_preview(previews, path: Path) -> None:
    """One frame from the middle of each anomalous interval, captioned, in a 4-wide grid."""
    if not previews:
        return
    tiles = []
    for name, kind, runs, image in previews:
        tile = cv2.resize(image, (192, 144), interpolation=cv2.INTER_AREA)
        cv2.rectangle(tile, (0, 0), (191, 12), (0, 0, 0), -1)
        cv2.putText(tile, f"{name} {runs[0][0]}-{runs[0][1]}", (2, 9),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(np.pad(tile, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    main()

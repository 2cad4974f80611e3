"""Beyond one GPU: score a whole benchmark, on this machine or on a Ray cluster (notebook 90).

>>> from vadnb.scale import run_dataset
>>> run = run_dataset("campus", "classical", out_dir="outputs/90/run")   # doctest: +SKIP
>>> run.summary["auc"], run.per_video                                    # doctest: +SKIP

How a run is organised
----------------------
1. The benchmark's videos of one split are listed (``Benchmark.subset(split)``).
2. Videos whose scores are already in ``out_dir`` are skipped (resume), if the video
   still has the content they were computed from (its digest, the one the methods' caches
   use, is saved with them: a video re-encoded in place is scored again). The rest are
   scored one video at a time by the method (``vadnb.<method>.run``), whose expensive
   stages are cached, so a run that stopped half-way through a video redoes little.
3. Each scored video is written at once to ``out_dir/frame_scores/<video>.parquet``
   (columns video, frame, score) and ``out_dir/segments/<video>.csv`` (the explanations).
   A video that fails (an unreadable file, an error in the method) is noted, and the run
   goes on with the next one.
4. At the end, ``per_video.csv`` (one row per scored video: frames, AUC, AP, mean score,
   seconds, model calls) and ``summary.json`` (micro AUC/AP over the frames of the scored
   videos via :mod:`vadnb.metrics`, profile, the ``meaningless`` flag, model calls per role,
   wall time, and ``failed``: each failed video with its error) are written; then, if any
   video failed, :class:`RunFailed` is raised. ``run.json`` records what the folder
   holds, so a resume with other settings is refused instead of mixing two runs.

Executors
---------
``executor="local"`` scores the videos in this process, loading each model once
(``preload``; LAVAD loads one model at a time instead, so it fits a 16 GB card).

``executor="ray"`` turns the videos into a Ray Data dataset and maps it through an
*actor pool*: each actor loads the method's models once (``num_gpus`` per actor, e.g. 1
on a GPU cluster) and scores the videos it is handed; results stream back to this process,
which writes them as above (so the output folder need not be shared with the cluster,
only the videos must be readable by the workers). ``ray_address=None`` starts a local Ray
on this machine; ``"auto"`` or ``"ray://head:10001"`` joins a cluster. The unit of work is
a video: the methods batch frames inside a video themselves, and a served model
(``llm_model="openai:<name>@<url>"``, see :mod:`vadnb.models.served`) batches requests
from every actor on the server's GPUs.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd

from . import metrics
from . import registry
from .detect import METHODS, TINY_WARNING, Detection

__all__ = ["run_dataset", "load_run", "RunResult", "RunFailed", "resolve_benchmark", "start_ray",
           "score_video", "read_frame_scores", "METHOD_ROLES", "DATASETS",
           "calls_per_minute", "cost_table", "gpu_hours", "SECONDS_PER_CALL", "BENCHMARK_SIZES"]

#: The model roles each method uses: key in its ``backends`` dict -> role to load (each
#: method's declaration, :mod:`vadnb.registry`). An actor (or the local executor) loads these
#: once and reuses them for every video.
METHOD_ROLES: Mapping[str, dict[str, str]] = registry.view(lambda m: dict(m.roles))

#: Benchmark names run_dataset accepts, and the loader of each (all but campus need root=).
DATASETS = ("campus", "ucf_crime", "xd_violence", "shanghaitech", "avenue", "ubnormal")

_ENV_FOR_WORKERS = ("VADNB_CACHE", "VADNB_PROFILE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                    "HF_HOME", "TOKENIZERS_PARALLELISM", "VADNB_SERVED_API_KEY")


@dataclass
class RunResult:
    """What :func:`run_dataset` wrote: the folder, the summary and the per-video table.

    ``failed``: one ``{"video", "error_type", "error"}`` per video that could not be scored
    (also in ``summary["failed"]``); the metrics are over the other videos.
    """

    out_dir: Path
    summary: dict[str, Any]
    per_video: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    def frame_scores(self) -> dict[str, np.ndarray]:
        """``{video: float32 scores}`` read back from ``out_dir/frame_scores``."""
        return read_frame_scores(self.out_dir)

    def __repr__(self) -> str:
        s = self.summary
        flag = f" [{TINY_WARNING}]" if s.get("meaningless") else ""
        return (f"RunResult({s['dataset']!r}, method={s['method']!r}, profile={s['profile']!r}, "
                f"videos={s['videos']}, auc={s['auc']:.3f}, ap={s['ap']:.3f}, "
                f"executor={s['executor']!r}, out_dir={str(self.out_dir)!r}"
                f"{f', failed={len(self.failed)}' if self.failed else ''}){flag}")


class RunFailed(RuntimeError):
    """Some videos of a run could not be scored; raised after everything else is saved.

    ``result`` is the :class:`RunResult` of the videos that were scored (its ``failed``
    names the others), so nothing computed is lost: ``load_run(out_dir)`` reads it back too.
    """

    def __init__(self, result: RunResult):
        self.result = result
        failed = result.failed
        listed = "; ".join(f"{f['video']!r}: {f['error_type']}: {f['error']}" for f in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(
            f"{len(failed)} video(s) failed: {listed}{more}. The other "
            f"{result.summary['videos']} video(s) are scored, saved and evaluated in "
            f"{result.out_dir} (summary.json lists the failures). Fix the cause (or leave "
            "the videos out with videos=[...]) and run again to resume: only the failed "
            "videos are scored")


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def resolve_benchmark(dataset: Any, root: str | os.PathLike | None = None, split: str | None = "test"):
    """A :class:`vadnb.data.Benchmark` (of ``split``) from a Benchmark or a name of
    :data:`DATASETS` (all but the bundled ``"campus"`` need ``root=``, the folder you
    downloaded)."""
    from . import data

    if isinstance(dataset, str):
        key = dataset.lower().replace("-", "_")
        if key not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; use a Benchmark or one of {DATASETS}")
        if key != "campus" and root is None:
            raise ValueError(f"dataset {dataset!r} needs root=<the folder you downloaded it to>; "
                             f"see vadnb.data.load_{key} for the layout it expects")
        dataset = getattr(data, f"load_{key}")(root)
    elif not isinstance(dataset, data.Benchmark):
        raise TypeError(f"dataset must be a vadnb.data.Benchmark or a name, got {type(dataset)}")
    if split is None or set(dataset.table["split"]) == {split}:  # already that split (or a subset)
        return dataset
    return dataset.subset(split)


def _signature(bench_name: str, method: str, profile: str, overrides: dict[str, Any]) -> dict:
    from .models.served import redact

    # a served model's URL may hold a password: run.json and summary.json never show it
    text = redact(json.dumps(overrides, sort_keys=True, default=str))
    return {"dataset": bench_name, "method": method, "profile": profile,
            "overrides": json.loads(text)}


# --------------------------------------------------------------------------------------
# One video
# --------------------------------------------------------------------------------------


def load_method_backends(method: str, profile: str | None, overrides: dict[str, Any],
                         roles: dict[str, str] | None = None) -> dict[str, Any]:
    """Load every model ``method`` needs (or just ``roles``) once.

    ``overrides`` may name a model per role (``llm_model=...``), as the method's Config does.
    """
    from . import models

    roles = METHOD_ROLES[method] if roles is None else roles
    return {key: models.load(role, profile=profile, model=overrides.get(f"{key}_model"))
            for key, role in roles.items()}


def score_video(video: str | os.PathLike, method: str, *, profile: str | None = None,
                backends: dict[str, Any] | None = None, cache: Any = None,
                **overrides: Any) -> Detection:
    """Score one video with ``method`` (``vadnb.<method>.run``), reusing ``backends``."""
    import importlib

    module = importlib.import_module(METHODS[method])
    kwargs: dict[str, Any] = {"profile": profile, "cache": cache, **overrides}
    if backends:
        kwargs["backends"] = backends
    return module.run(video, **kwargs)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FRAME = re.compile(r'^\s*File "[^"]+", line \d+, in .*$', re.M)


def _one_line(err: BaseException | str, limit: int = 500) -> str:
    """An error's message on one line, cut to ``limit`` characters (for summary.json).

    A Ray error's message holds the worker's colored traceback: only what its last frame
    raised is kept (e.g. ``ModelUnavailableError: the clip model ... is not available``).
    """
    text = _ANSI.sub("", str(err))
    frames = list(_FRAME.finditer(text))
    if frames:  # after the last frame: its source lines (indented), then the error
        rest = text[frames[-1].end():].splitlines()
        raised = [i for i, line in enumerate(rest) if line and not line[0].isspace()]
        text = "\n".join(rest[raised[0]:]) if raised else text
    text = " ".join(text.split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _stamp(path: str | os.PathLike) -> str:
    """Size and modification time of a video file ("" for a frame folder: always hashed)."""
    st = os.stat(path)
    return "" if stat.S_ISDIR(st.st_mode) else f"{st.st_size}:{st.st_mtime_ns}"


def _stem(name: str) -> str:
    """A file name for video ``name``: unique and reversible (:func:`video_name`).

    Percent-encoding of every character outside ``[A-Za-z0-9_.-]`` (so ``a/b`` is
    ``a%2Fb`` and ``a__b`` stays ``a__b``), and of a leading dot (no hidden files).
    """
    stem = quote(str(name), safe="-_.")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if not stem:
        raise ValueError("a video has an empty name; every video needs a name")
    if len(stem.encode()) > 240:
        raise ValueError(f"video name {str(name)[:60]!r}... is too long for a file name "
                         f"({len(stem)} characters once encoded; the limit is 240)")
    return stem


def video_name(stem: str) -> str:
    """The video name that :func:`_stem` turned into the file name ``stem``."""
    return unquote(stem)


def _write_video(out_dir: Path, row: dict[str, Any]) -> None:
    """Write one video's frame scores (Parquet) and segments (CSV), atomically."""
    name = row["video"]
    stem = _stem(name)
    scores = np.frombuffer(row["scores"], dtype=np.float32)
    table = pd.DataFrame({"video": name, "frame": np.arange(len(scores), dtype=np.int64),
                          "score": scores})
    folder = out_dir / "frame_scores"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{stem}.parquet.tmp"
    table.to_parquet(tmp, index=False)
    segs = pd.read_json(io.StringIO(row["segments"]), orient="records")
    (out_dir / "segments").mkdir(exist_ok=True)
    segs.to_csv(out_dir / "segments" / f"{stem}.csv", index=False)
    meta = {k: row[k] for k in ("video", "profile", "meaningless", "seconds", "stamp", "digest")}
    meta["model_calls"] = json.loads(row["model_calls"])
    (out_dir / "segments" / f"{stem}.json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / f"{stem}.parquet")  # the scores file appears last: "done"


def read_frame_scores(out_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{video: float32 frame scores}`` from a run folder's ``frame_scores/*.parquet``."""
    folder = Path(out_dir) / "frame_scores"
    out = {}
    for f in sorted(folder.glob("*.parquet")):
        t = pd.read_parquet(f).sort_values("frame")
        name = str(t["video"].iloc[0]) if len(t) else video_name(f.stem)
        out[name] = t["score"].to_numpy(np.float32)
    return out


def _done(out_dir: Path, table: pd.DataFrame) -> set[str]:
    """The videos of ``table`` whose scores in ``out_dir`` are of their current content.

    A result counts only if it records the content digest of the file it scored and the
    file still has it (checked by size and modification time first, hashed only when those
    changed). A stale result (the video was re-encoded in place) is deleted, scores first
    (they mark it done), so it is scored again and, should that fail, no old scores stand
    in for it. A video this machine cannot see (on a cluster's storage only) is taken as
    unchanged.
    """
    done = set()
    for name, path in zip(table["name"], table["path"]):
        stem = _stem(name)
        files = [out_dir / "frame_scores" / f"{stem}.parquet",
                 out_dir / "segments" / f"{stem}.json", out_dir / "segments" / f"{stem}.csv"]
        if not files[0].exists():
            continue
        try:
            meta = json.loads(files[1].read_text())
        except (OSError, ValueError):
            meta = {}
        if _unchanged(meta, path):
            done.add(name)
        else:
            for f in files:
                f.unlink(missing_ok=True)
    return done


def _unchanged(meta: dict[str, Any], path: str | os.PathLike) -> bool:
    """Whether the video at ``path`` is the one ``meta`` (a saved result) was scored from."""
    from .cache import file_digest

    if not meta.get("digest"):
        return False  # written before results recorded their content: score again
    try:
        stamp = meta.get("stamp")  # "" for a frame folder: always hashed
        return (bool(stamp) and stamp == _stamp(path)) or file_digest(path) == meta["digest"]
    except FileNotFoundError:
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------


def _score_row(name: str, path: str, method: str, profile: str | None,
               backends: dict[str, Any] | None, cache: Any,
               overrides: dict[str, Any]) -> dict[str, Any]:
    """Score one video into a row of plain types (it crosses process borders), or an error
    row with the same columns (one schema for Ray Data): one bad video (unreadable, or
    breaking the method half-way) must not stop a benchmark run."""
    from .cache import file_digest

    t0 = time.perf_counter()
    row = {"video": name, "scores": b"", "profile": "", "meaningless": False, "segments": "[]",
           "model_calls": "[]", "stamp": "", "digest": "", "error_type": "", "error": ""}
    try:
        stamp, digest = _stamp(path), file_digest(path)  # before scoring: what is scored
        det = score_video(path, method, profile=profile, backends=backends, cache=cache,
                          **overrides)
    except Exception as err:
        row.update(error_type=type(err).__name__, error=_one_line(err))
    else:
        calls = det.model_calls
        row.update(scores=np.asarray(det.frame_scores, dtype=np.float32).tobytes(),
                   profile=det.profile, meaningless=bool(det.meaningless),
                   segments=det.segments.to_json(orient="records"),
                   model_calls=calls.to_json(orient="records") if len(calls) else "[]",
                   stamp=stamp, digest=digest)
    row["seconds"] = float(time.perf_counter() - t0)
    return row


def _save_rows(out_dir: Path, rows: Iterable[dict[str, Any]], total: int, desc: str,
               progress: bool) -> list[dict[str, str]]:
    """Save each video's result as it arrives (a stopped run keeps them); note failures."""
    from .progress import bar

    failed: list[dict[str, str]] = []
    for row in bar(rows, total=total, desc=desc, disable=not progress):
        if row["error_type"]:
            failed.append({k: str(row[k]) for k in ("video", "error_type", "error")})
        else:
            _write_video(out_dir, row)
    return failed


def _run_local(todo: pd.DataFrame, method: str, profile: str | None, cache: Any,
               out_dir: Path, overrides: dict[str, Any], backends: dict[str, Any] | None,
               preload: bool, progress: bool) -> list[dict[str, str]]:
    given = dict(backends or {})
    missing = {k: r for k, r in METHOD_ROLES[method].items() if k not in given}
    loaded = load_method_backends(method, profile, overrides, roles=missing) if preload else {}
    models = {**loaded, **given}
    rows = (_score_row(name, str(path), method, profile, models, cache, overrides)
            for name, path in zip(todo["name"], todo["path"]))
    try:
        return _save_rows(out_dir, rows, len(todo), f"{method} (local)", progress)
    finally:
        for b in loaded.values():
            b.release()


class _VideoScorer:
    """A Ray actor: loads the method's models once, then scores the videos it is given."""

    def __init__(self, method: str, profile: str | None, cache: str | None,
                 overrides: dict[str, Any], env: dict[str, str], preload: bool):
        os.environ.update(env)
        self.method, self.profile, self.cache, self.overrides = method, profile, cache, overrides
        self.backends = load_method_backends(method, profile, overrides) if preload else {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [_score_row(str(name), str(path), self.method, self.profile, self.backends,
                           self.cache, self.overrides)
                for name, path in zip(batch["video"], batch["path"])]
        return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}


def _worker_env() -> dict[str, str]:
    return {k: os.environ[k] for k in _ENV_FOR_WORKERS if k in os.environ}


def start_ray(address: str | None = None, num_cpus: int | None = None,
              num_gpus: int | None = None) -> None:
    """Connect to Ray once: a local Ray on this machine (``address=None``) or a cluster.

    The local Ray listens on 127.0.0.1 only and starts no dashboard. The vadnb settings
    of this process (cache folder, profile, offline flags) are passed to the workers.
    Does nothing when Ray is already initialised (e.g. by you, with your own options).
    """
    import logging

    if address is None:
        # a one-machine Ray: every Ray process listens on 127.0.0.1 only (Ray's switch for
        # "no multi-node cluster"; its name mentions Windows/macOS but it works everywhere)
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    if ray.is_initialized():
        return
    if address is None:
        try:  # the same switch, for a Ray that was imported before the variable was set
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = False
        except (ImportError, AttributeError):  # a private name: gone in some future Ray
            pass
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address is None:  # local workers inherit this process's environment
        kwargs.update(num_cpus=num_cpus or min(2, os.cpu_count() or 1), num_gpus=num_gpus,
                      _node_ip_address="127.0.0.1")
    else:
        kwargs.update(address=address, runtime_env={"env_vars": _worker_env()})
    ray.init(**kwargs)


def _run_ray(todo: pd.DataFrame, method: str, profile: str | None, cache: str | None,
             out_dir: Path, overrides: dict[str, Any], ray_address: str | None, actors: int,
             gpus_per_actor: float, cpus_per_actor: float, preload: bool,
             progress: bool) -> list[dict[str, str]]:
    import logging

    import ray

    start_ray(ray_address)
    ray.data.DataContext.get_current().enable_progress_bars = False  # our own bar below
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ...and no note that Ray's bars are off (its own logger: Ray Data may reset "ray.data")
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    items = [{"video": n, "path": str(p)} for n, p in zip(todo["name"], todo["path"])]
    videos = ray.data.from_items(items, override_num_blocks=len(items))
    # max_restarts=0: an actor is not restarted, nor its video retried. Ray Data's default
    # (restart forever, retry forever) would hang a run on a video that crashes its worker,
    # and makes Ray's C++ core worker print a note per actor on stderr (ray#53727). A
    # crashed worker stops the pipeline instead: what arrived is saved, the rest are failed
    # videos, scored again on resume. (Ray 2.60 takes max_restarts only among the generic
    # remote arguments, which it marks deprecated: that warning is not for the reader.)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        scored = videos.map_batches(
            _VideoScorer, batch_size=1, max_restarts=0,
            compute=ray.data.ActorPoolStrategy(size=max(1, min(actors, len(items)))),
            num_gpus=gpus_per_actor, num_cpus=cpus_per_actor,
            fn_constructor_kwargs={"method": method, "profile": profile, "cache": cache,
                                   "overrides": overrides, "env": _worker_env(),
                                   "preload": preload})

    def rows():
        arrived = set()
        try:
            for row in scored.iter_rows():  # streams: each video is saved as it arrives
                arrived.add(row["video"])
                yield row
        except Exception as err:  # the pool itself broke (a model that fails to load, a
            # worker killed for memory): what arrived is saved; the rest are failures
            error = "not scored, the Ray pipeline stopped: " + _one_line(err)
            yield from ({"video": i["video"], "error_type": type(err).__name__, "error": error}
                        for i in items if i["video"] not in arrived)

    return _save_rows(out_dir, rows(), len(items), f"{method} (ray)", progress)


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def run_dataset(dataset: Any, method: str = "classical", profile: str | None = None, *,
                executor: str = "local", ray_address: str | None = None,
                out_dir: str | os.PathLike = "outputs/scale", split: str | None = "test",
                root: str | os.PathLike | None = None, videos: list[str] | None = None,
                cache: Any = None, backends: dict[str, Any] | None = None,
                actors: int = 2, gpus_per_actor: float = 0, cpus_per_actor: float = 1,
                preload: bool | None = None, overwrite: bool = False, progress: bool = True,
                **method_overrides: Any) -> RunResult:
    """Score every video of a benchmark split with ``method`` and evaluate the run.

    Args:
        dataset: a :class:`vadnb.data.Benchmark` or a name (:func:`resolve_benchmark`).
        method: a key of :data:`vadnb.detect.METHODS` (``"classical"``, ``"lavad"``, ...).
        profile: model profile ("tiny", "colab", "paper"; default ``$VADNB_PROFILE``).
        executor: ``"local"`` (this process) or ``"ray"`` (an actor pool, see module doc).
        ray_address: ``None`` for a local Ray, ``"auto"`` / ``"ray://host:10001"`` for a cluster.
        out_dir: the run folder (frame scores, segments, per_video.csv, summary.json).
        split: which split to score (``None``: every video).
        videos: only these video names (e.g. a quick first look at two clips).
        cache: a :class:`vadnb.cache.Cache` or folder for the methods' stages
            (default: the suite's cache; Ray workers get the same folder).
        backends: models you built (``{"llm": ...}``); local executor only.
        actors / gpus_per_actor / cpus_per_actor: the Ray actor pool's size and resources.
        preload: load the method's models once for every video (default), or let the
            method load and release them per video (LAVAD's default: its three models
            together do not fit a 16 GB card; each video then pays the loading).
        overwrite: start afresh when ``out_dir`` holds another run.
        progress: show a progress bar.
        method_overrides: Config fields of the method (``stride=32``,
            ``vlm_model="openai:<name>@<url>"``, ``prompts=[...]``, ``checkpoint=...``).

    Returns:
        A :class:`RunResult`; ``summary["meaningless"]`` is True for the tiny profile.

    Raises:
        RunFailed: some videos could not be scored (an unreadable file, an error in the
            method). It comes at the end, after every other video is saved and evaluated,
            and names each failed video with its error; ``e.result`` is the run of the
            others, so a benchmark number with videos missing is never returned as if it
            were complete. A rerun resumes and scores only the failed videos.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "ray" and backends:
        raise ValueError("backends=... objects cannot be shipped to Ray actors; pass model "
                         "names instead (e.g. llm_model='openai:<name>@<url>' for a server)")
    bench = resolve_benchmark(dataset, root=root, split=split)
    table = bench.table  # not .videos: it decodes every video up front, and one bad file
    # would stop the run before any is scored; a video that cannot be read fails alone
    if videos is not None:
        unknown = sorted(set(videos) - set(table["name"]))
        if unknown:
            raise ValueError(f"videos {unknown[:5]} are not in {bench.name!r}; names look like "
                             f"{table['name'].iloc[0]!r}")
        table = table[table["name"].isin(list(videos))].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"benchmark {bench.name!r} has no videos to score")
    dupes = sorted(table["name"][table["name"].duplicated()].astype(str).unique())
    if dupes:
        raise ValueError(f"benchmark {bench.name!r} lists videos {dupes[:5]} more than once; "
                         "every video needs a unique name")
    for name in table["name"]:
        _stem(name)  # a name that cannot be a file name fails here, before any work
    from .cache import Cache, get_cache
    from .models.profiles import resolve_profile

    out = Path(out_dir)
    model_free = not METHOD_ROLES.get(method)  # then the profile does not matter
    sig = _signature(bench.name, method, "none" if model_free else resolve_profile(profile),
                     method_overrides)
    _claim(out, sig, overwrite)

    cache_root = str(cache.root if isinstance(cache, Cache) else get_cache(cache).root)
    done = _done(out, table)
    todo = table[~table["name"].isin(done)].reset_index(drop=True)
    preload = method != "lavad" if preload is None else preload
    t0 = time.perf_counter()
    failed: list[dict[str, str]] = []
    if len(todo) and executor == "local":
        failed = _run_local(todo, method, profile, cache_root, out, method_overrides, backends,
                            preload, progress)
    elif len(todo):
        failed = _run_ray(todo, method, profile, cache_root, out, method_overrides,
                          ray_address, actors, gpus_per_actor, cpus_per_actor, preload,
                          progress)
    result = _evaluate(bench, table, out, sig, executor, time.perf_counter() - t0,
                       sorted(done), len(todo) - len(failed), failed)
    if result.failed:
        raise RunFailed(result)
    return result


def _claim(out: Path, sig: dict[str, Any], overwrite: bool) -> None:
    """Make ``out`` this run's folder; refuse (or with ``overwrite`` clear) another run's."""
    meta = out / "run.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old != sig:
            if not overwrite:
                diff = {k: (old.get(k), v) for k, v in sig.items() if old.get(k) != v}
                raise ValueError(
                    f"{out} holds another run (differs in {diff}); choose another out_dir, or "
                    "pass overwrite=True to delete its scores and start again")
            for sub in ("frame_scores", "segments"):
                shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(sig, indent=2))


def _evaluate(bench, table: pd.DataFrame, out: Path, sig: dict[str, Any], executor: str,
              wall: float, skipped: list[str], scored: int,
              failed: list[dict[str, str]]) -> RunResult:
    """Per-video and micro metrics of the videos that were scored (not ``failed``);
    writes per_video.csv and summary.json (which lists the failures)."""
    scores = read_frame_scores(out)
    failed_names = {f["video"] for f in failed}
    names = [n for n in table["name"] if n not in failed_names]
    missing = [n for n in names if n not in scores]
    if missing:
        raise ValueError(f"{out}/frame_scores has no scores for {len(missing)} video(s) "
                         f"({missing[:5]}; expected files such as "
                         f"{_stem(missing[0])}.parquet): run again to score them")
    # Anomalous training videos of weakly supervised benchmarks have a video-level label
    # only: they are scored (a row without metrics), but only videos with frame labels
    # enter the metrics.
    labels = {n: bench.frame_labels(n) for n in names if bench.has_frame_labels(n)}
    for n in labels:
        if len(scores[n]) != len(labels[n]):
            raise ValueError(f"{out}/frame_scores/{_stem(n)}.parquet has {len(scores[n])} scores but "
                             f"the video has {len(labels[n])} labelled frames; delete the file "
                             "to score the video again")
    evaluated = metrics.per_video(labels, {n: scores[n] for n in labels})
    columns = ["frames", "anomalous_frames", "auc", "ap", "mean_score"]
    per_video = evaluated.set_index("video") if len(evaluated) else pd.DataFrame(columns=columns)
    per_video = per_video.reindex(names).rename_axis("video").reset_index()
    per_video["frames"] = [len(scores[n]) for n in names]
    metas = {n: json.loads((out / "segments" / f"{_stem(n)}.json").read_text()) for n in names}
    per_video.insert(1, "label", [bench.video_classes()[n] for n in names])
    per_video["seconds"] = [metas[n]["seconds"] for n in names]
    per_video["model_calls"] = [int(sum(c.get("calls", 0) for c in metas[n]["model_calls"]))
                                for n in names]
    per_video["profile"] = [metas[n]["profile"] for n in names]
    per_video.to_csv(out / "per_video.csv", index=False)

    calls: dict[str, dict[str, float]] = {}
    for n in names:
        for c in metas[n]["model_calls"]:
            role = calls.setdefault(c.get("role", "?"), {"calls": 0, "items": 0, "seconds": 0.0})
            for k in role:
                role[k] += c.get(k, 0) or 0
    profiles = sorted(set(per_video["profile"]))
    meaningless = any(metas[n]["meaningless"] for n in names)
    summary: dict[str, Any] = {
        **sig,
        "profile": profiles[0] if len(profiles) == 1 else "mixed" if profiles else sig["profile"],
        "executor": executor,
        "videos": len(names),
        "videos_failed": len(failed),
        "failed": failed,
        "frames": int(per_video["frames"].sum()),
        "scored_now": scored,
        "resumed": len(skipped),
        "video_level_only": len(names) - len(labels),
        "auc": _micro(metrics.frame_auc, labels, scores),
        "ap": _micro(metrics.frame_ap, labels, scores),
        "meaningless": meaningless,
        "warning": TINY_WARNING if meaningless else "",
        "model_calls": calls,
        "wall_s": round(wall, 3),
        "video_seconds": float(per_video["seconds"].sum()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return RunResult(out, summary, per_video, skipped, failed)


def _micro(fn, labels: dict[str, np.ndarray], scores: dict[str, np.ndarray]) -> float:
    try:
        return fn(labels, {n: scores[n] for n in labels})
    except ValueError:  # one class only (e.g. a subset of normal videos): undefined
        return float("nan")


def load_run(out_dir: str | os.PathLike) -> RunResult:
    """A finished run read back from its folder (summary.json, per_video.csv)."""
    out = Path(out_dir)
    if not (out / "summary.json").exists():
        raise FileNotFoundError(f"{out}/summary.json not found: run vadnb.scale.run_dataset "
                                f"with out_dir={str(out)!r} first (it resumes if interrupted)")
    summary = json.loads((out / "summary.json").read_text())
    return RunResult(out, summary, pd.read_csv(out / "per_video.csv"),
                     failed=summary.get("failed", []))


# --------------------------------------------------------------------------------------
# Cost model: model calls per minute of video, and GPU-hours for a benchmark (notebook 90)
# --------------------------------------------------------------------------------------

#: Test-set sizes of the two big benchmarks (REFERENCE: ~1.11 M frames at 30 fps, ~2.34 M at 24 fps).
BENCHMARK_SIZES: dict[str, dict[str, float]] = {
    "ucf_crime": {"frames": 1_110_000, "fps": 30.0},
    "xd_violence": {"frames": 2_340_000, "fps": 24.0},
}

#: ASSUMED GPU seconds per call (one caption, one LLM reply, one VLM reply, one image
#: encoded), with the batching the backends do. Not measured here (no GPU): rough figures
#: for a T4 in fp16 with the colab models and an A100 with the paper models, to be replaced
#: by your own measurements (``vadnb.models.call_stats()`` gives seconds per call).
SECONDS_PER_CALL: dict[str, dict[str, float]] = {
    "colab": {  # T4 16 GB: BLIP-2 opt-2.7b, Qwen2.5-3B, Qwen2.5-VL-3B, CLIP B/16, ImageBind huge
        "captioner": 0.15, "llm": 0.6, "vlm": 1.2, "vlm_1_image": 0.5,
        "clip": 0.004, "embedder": 0.02, "embedder_video": 0.05},
    "paper": {  # A100: BLIP-2 flan-t5-xxl, Llama-2-13b-chat, InternVL2-8B, same encoders
        "captioner": 0.12, "llm": 0.8, "vlm": 0.9, "vlm_1_image": 0.3,
        "clip": 0.002, "embedder": 0.008, "embedder_video": 0.02},
}


def calls_per_minute(method: str, fps: float = 30.0, captioners: int = 1,
                     keywords: int = 1) -> list[dict[str, Any]]:
    """Model calls per minute of video for ``method`` with its Config defaults.

    One row per kind of call: ``role``, ``kind`` (the key of :data:`SECONDS_PER_CALL`),
    ``calls`` per minute and the ``formula``. ``captioners``: how many captioners LAVAD
    runs (the paper: 5); ``keywords``: how many anomaly descriptions AnyAnomaly checks.
    Training (VERA's questions, AnomalyCLIP's head) is not included: it is paid once.
    ``"lavad-published"`` is LAVAD as its code runs (5 captioners on every frame), to set
    against ``"lavad"`` as this suite runs it (captions only at the frames used).
    """
    name, options = method, {"captioners": captioners, "keywords": keywords}
    variants = {v: (m.name, o) for m in registry.methods() for v, o in m.cost_variants.items()}
    if method in variants:
        name, extra = variants[method]
        options.update(extra)
    elif method not in registry.names():
        raise ValueError(f"unknown method {method!r}; choose one of "
                         f"{sorted(registry.names()) + sorted(variants)}")
    cost = registry.get(name).cost
    rows = cost(fps, **options) if cost is not None else []
    return [{"method": method, "role": r, "kind": k, "calls": v, "formula": f}
            for r, k, v, f in rows]


def cost_table(methods: list[str] | None = None, fps: float = 30.0,
               profiles: tuple[str, ...] = ("colab", "paper"), captioners: int = 1,
               keywords: int = 1,
               seconds_per_call: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """Calls per minute of video and GPU seconds per minute, per method, role and profile."""
    spc = seconds_per_call or SECONDS_PER_CALL
    rows = []
    for m in methods or registry.names():
        entries = calls_per_minute(m, fps, captioners, keywords) or [
            {"method": m, "role": "none (CPU)", "kind": "", "calls": 0.0, "formula": "no model"}]
        for e in entries:
            row = {**e, "fps": fps}
            for p in profiles:
                row[f"gpu_s_per_min_{p}"] = e["calls"] * spc[p].get(e["kind"], 0.0)
            rows.append(row)
    return pd.DataFrame(rows)


def gpu_hours(table: pd.DataFrame, frames: float, fps: float, profile: str) -> pd.Series:
    """GPU-hours per method to score ``frames`` frames at ``fps`` (table from :func:`cost_table`
    computed at the same fps)."""
    minutes = frames / fps / 60.0
    return table.groupby("method", sort=False)[f"gpu_s_per_min_{profile}"].sum() * minutes / 3600.0

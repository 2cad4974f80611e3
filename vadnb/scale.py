"""Beyond one GPU: score a whole benchmark, on this machine or on a Ray cluster (notebook 90).

``run_dataset`` writes each video's scores to ``out_dir`` as it comes, resumes (a video
re-encoded in place is scored again), refuses another run's folder, goes on past a failing
video and raises :class:`RunFailed` once the rest is saved and evaluated. ``executor="ray"``
maps the videos through a Ray Data actor pool (each actor loads the models once; results
stream back here, so only the videos must be readable by the workers).
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import re
import shutil
import stat
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd

from . import metrics, models, registry
from .cache import file_digest, get_cache
from .detect import TINY_WARNING, Detection
from .models.profiles import resolve_profile
from .models.served import redact
from .progress import bar

__all__ = ["run_dataset", "load_run", "RunResult", "RunFailed", "resolve_benchmark", "start_ray",
           "score_video", "read_frame_scores", "METHOD_ROLES", "DATASETS",
           "calls_per_minute", "cost_table", "gpu_hours", "SECONDS_PER_CALL", "BENCHMARK_SIZES"]

#: Per method: key in its ``backends`` dict -> the role loaded once for every video.
METHOD_ROLES: Mapping[str, dict[str, str]] = registry.view(lambda m: dict(m.roles))

#: Benchmark names run_dataset accepts, and the loader of each (all but campus need root=).
DATASETS = ("campus", "ucf_crime", "xd_violence", "shanghaitech", "avenue", "ubnormal")

_ENV_FOR_WORKERS = ("VADNB_CACHE", "VADNB_PROFILE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                    "HF_HOME", "TOKENIZERS_PARALLELISM", "VADNB_SERVED_API_KEY")


@dataclass
class RunResult:
    """What :func:`run_dataset` wrote; ``failed``: one ``{"video", "error_type", "error"}``
    per video that could not be scored (the metrics are over the others)."""

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
    """Some videos could not be scored; raised after the others are saved and evaluated
    (``e.result``, or ``load_run(out_dir)``)."""

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


def resolve_benchmark(dataset: Any, root: str | os.PathLike | None = None,
                      split: str | None = "test"):
    """A :class:`vadnb.data.Benchmark` (of ``split``) from a Benchmark or a name of
    :data:`DATASETS` (all but ``"campus"`` need ``root=``, the folder you downloaded)."""
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
    as_is = split is None or set(dataset.table["split"]) == {split}  # that split (or a subset)
    return dataset if as_is else dataset.subset(split)


def _signature(bench_name: str, method: str, profile: str, overrides: dict[str, Any]) -> dict:
    # a served model's URL may hold a password: run.json and summary.json never show it
    text = redact(json.dumps(overrides, sort_keys=True, default=str))
    return {"dataset": bench_name, "method": method, "profile": profile,
            "overrides": json.loads(text)}


def load_backends(roles: Mapping[str, str], profile: str | None,
                  overrides: dict[str, Any]) -> dict[str, Any]:
    """Load ``roles`` (backends key -> role); ``overrides`` may name a model (``llm_model=``)."""
    return {key: models.load(role, profile=profile, model=overrides.get(f"{key}_model"))
            for key, role in roles.items()}


def score_video(video: str | os.PathLike, method: str, *, profile: str | None = None,
                backends: dict[str, Any] | None = None, cache: Any = None,
                **overrides: Any) -> Detection:
    """Score one video with ``method`` (``vadnb.<method>.run``), reusing ``backends``."""
    module = importlib.import_module(registry.module_of(method))
    given = {"backends": backends} if backends else {}
    return module.run(video, profile=profile, cache=cache, **given, **overrides)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FRAME = re.compile(r'^\s*File "[^"]+", line \d+, in .*$', re.M)


def _one_line(err: BaseException | str) -> str:
    """An error on one line (at most 500 characters); of a Ray traceback, what it raised."""
    text = _ANSI.sub("", str(err))
    frames = list(_FRAME.finditer(text))
    if frames:  # after the last frame: its (indented) source lines, then the error
        rest = text[frames[-1].end():].splitlines()
        raised = [i for i, line in enumerate(rest) if line and not line[0].isspace()]
        text = "\n".join(rest[raised[0]:]) if raised else text
    text = " ".join(text.split()) or type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _stamp(path: str | os.PathLike) -> str:
    """Size and mtime of a video file ("" for a frame folder: always hashed)."""
    st = os.stat(path)
    return "" if stat.S_ISDIR(st.st_mode) else f"{st.st_size}:{st.st_mtime_ns}"


def _stem(name: str) -> str:
    """A unique, reversible file name for video ``name``: percent-encoded, no leading dot."""
    stem = quote(str(name), safe="-_.")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if not stem:
        raise ValueError("a video has an empty name; every video needs a name")
    if len(stem.encode()) > 240:
        raise ValueError(f"video name {str(name)[:60]!r}... is too long for a file name "
                         f"({len(stem)} characters once encoded; the limit is 240)")
    return stem


video_name = unquote  # the video name that _stem turned into a file name


def _write_video(out_dir: Path, row: dict[str, Any]) -> None:
    """Write one video's segments and scores (Parquet, last: it marks the video done)."""
    stem, scores = _stem(row["video"]), np.frombuffer(row["scores"], dtype=np.float32)
    for folder in ("segments", "frame_scores"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    segments = pd.read_json(io.StringIO(row["segments"]), orient="records")
    segments.to_csv(out_dir / "segments" / f"{stem}.csv", index=False)
    meta = {k: row[k] for k in ("video", "profile", "meaningless", "seconds", "stamp", "digest")}
    meta["model_calls"] = json.loads(row["model_calls"])
    (out_dir / "segments" / f"{stem}.json").write_text(json.dumps(meta, indent=1))
    tmp = out_dir / "frame_scores" / f".{stem}.parquet.tmp"
    pd.DataFrame({"video": row["video"], "frame": np.arange(len(scores), dtype=np.int64),
                  "score": scores}).to_parquet(tmp, index=False)
    os.replace(tmp, out_dir / "frame_scores" / f"{stem}.parquet")


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
    """The videos scored from their current content; stale results are deleted."""
    done = set()
    for name, path in zip(table["name"], table["path"]):
        stem = _stem(name)
        files = [out_dir / "frame_scores" / f"{stem}.parquet",
                 out_dir / "segments" / f"{stem}.json", out_dir / "segments" / f"{stem}.csv"]
        if files[0].exists() and _unchanged(files[1], path):
            done.add(name)
        else:  # (a result without a digest predates them: scored again)
            for f in files:
                f.unlink(missing_ok=True)
    return done


def _unchanged(meta_file: Path, path: str | os.PathLike) -> bool:
    try:
        meta = json.loads(meta_file.read_text())
        stamp = meta.get("stamp")
    except (OSError, ValueError, AttributeError):
        return False
    try:
        return bool(meta.get("digest")) and (
            (bool(stamp) and stamp == _stamp(path)) or file_digest(path) == meta["digest"])
    except FileNotFoundError:  # a video only the cluster can see: taken as unchanged
        return True
    except OSError:
        return False


class _VideoScorer:
    """Loads the method's models once (all but those ``given``), then scores videos; a Ray
    actor too. A result crosses process borders as plain types; a failure is a row too."""

    def __init__(self, method: str, profile: str | None, cache: str | None,
                 overrides: dict[str, Any], env: dict[str, str], preload: bool,
                 given: dict[str, Any] | None = None):
        os.environ.update(env)
        self.method, self.profile, self.cache, self.overrides = method, profile, cache, overrides
        missing = {k: r for k, r in METHOD_ROLES[method].items() if k not in (given or {})}
        self.loaded = load_backends(missing, profile, overrides) if preload else {}
        self.backends = {**self.loaded, **(given or {})}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [self.row(str(name), str(path)) for name, path in zip(batch["video"], batch["path"])]
        return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}

    def row(self, name: str, path: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        row = {"video": name, "scores": b"", "profile": "", "meaningless": False,
               "segments": "[]", "model_calls": "[]", "stamp": "", "digest": "",
               "error_type": "", "error": ""}
        try:
            stamp, digest = _stamp(path), file_digest(path)  # before scoring: what is scored
            det = score_video(path, self.method, profile=self.profile, backends=self.backends,
                              cache=self.cache, **self.overrides)
        except Exception as err:  # one bad video must not stop a run
            row.update(error_type=type(err).__name__, error=_one_line(err))
        else:
            row.update(scores=np.asarray(det.frame_scores, dtype=np.float32).tobytes(),
                       profile=det.profile, meaningless=bool(det.meaningless),
                       segments=det.segments.to_json(orient="records"),
                       model_calls=det.model_calls.to_json(orient="records"),
                       stamp=stamp, digest=digest)
        row["seconds"] = float(time.perf_counter() - t0)
        return row


def _score_all(todo: pd.DataFrame, out_dir: Path, job: dict[str, Any], progress: bool,
               backends: dict[str, Any] | None, ray: dict[str, Any] | None
               ) -> list[dict[str, str]]:
    """Score ``todo`` here (``ray`` None) or on Ray, saving each result as it arrives (a
    stopped run keeps them); return the failures."""
    scorer = None if ray else _VideoScorer(**job, env={}, given=backends)
    rows = _ray_rows(todo, job, **ray) if ray else (
        scorer.row(name, str(path)) for name, path in zip(todo["name"], todo["path"]))
    failed: list[dict[str, str]] = []
    try:
        for row in bar(rows, total=len(todo), desc=f"{job['method']} ({'ray' if ray else 'local'})",
                       disable=not progress):
            if row["error_type"]:
                failed.append({k: str(row[k]) for k in ("video", "error_type", "error")})
            else:
                _write_video(out_dir, row)
    finally:
        for b in scorer.loaded.values() if scorer else ():
            b.release()
    return failed


def _worker_env() -> dict[str, str]:
    return {k: os.environ[k] for k in _ENV_FOR_WORKERS if k in os.environ}


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to Ray once: a local Ray on 127.0.0.1 (``address=None``, no dashboard) or a
    cluster, with this process's vadnb settings; nothing if Ray is already initialised."""
    if address is None:  # Ray's switch for "no multi-node cluster" (works on every OS)
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address is None:  # local workers inherit this process's environment
        try:  # the same switch, for a Ray imported before the variable was set (private name)
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = False
        except (ImportError, AttributeError):
            pass
        kwargs.update(num_cpus=num_cpus or min(2, os.cpu_count() or 1),
                      _node_ip_address="127.0.0.1")
    else:
        kwargs.update(address=address, runtime_env={"env_vars": _worker_env()})
    ray.init(**kwargs)


def _ray_rows(todo: pd.DataFrame, job: dict[str, Any], address: str | None, actors: int,
              gpus_per_actor: float, cpus_per_actor: float) -> Iterator[dict[str, Any]]:
    import ray

    start_ray(address)
    ray.data.DataContext.get_current().enable_progress_bars = False  # our own bar below
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ...and no note that Ray's bars are off (its own logger: Ray Data may reset "ray.data")
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    items = [{"video": n, "path": str(p)} for n, p in zip(todo["name"], todo["path"])]
    videos = ray.data.from_items(items, override_num_blocks=len(items))
    # max_restarts=0: Ray Data's default (restart and retry forever) hangs a run on a video
    # that crashes its worker (ray#53727); a crash stops the pipeline, the rest are failures.
    # Ray 2.60 warns that these generic remote arguments are deprecated: not for the reader.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        scored = videos.map_batches(
            _VideoScorer, batch_size=1, max_restarts=0,
            compute=ray.data.ActorPoolStrategy(size=max(1, min(actors, len(items)))),
            num_gpus=gpus_per_actor, num_cpus=cpus_per_actor,
            fn_constructor_kwargs={**job, "env": _worker_env()})
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


def run_dataset(dataset: Any, method: str = "classical", profile: str | None = None, *,
                executor: str = "local", ray_address: str | None = None,
                out_dir: str | os.PathLike = "outputs/scale", split: str | None = "test",
                root: str | os.PathLike | None = None, videos: list[str] | None = None,
                cache: Any = None, backends: dict[str, Any] | None = None,
                actors: int = 2, gpus_per_actor: float = 0, cpus_per_actor: float = 1,
                preload: bool | None = None, overwrite: bool = False, progress: bool = True,
                **method_overrides: Any) -> RunResult:
    """Score every video of a benchmark split with ``method``, save and evaluate the run.

    ``dataset``: a Benchmark or a name of :data:`DATASETS` (``root=``: its folder);
    ``backends``: models you built (local only); ``preload``: load the models once for every
    video (not LAVAD's by default: together they do not fit a 16 GB card); other keywords are
    the method's Config fields. Raises :class:`RunFailed` once the other videos are saved and
    evaluated if any could not be scored; a rerun scores only those.
    """
    registry.module_of(method)  # an unknown method is an error
    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "ray" and backends:
        raise ValueError("backends=... objects cannot be shipped to Ray actors; pass model "
                         "names instead (e.g. llm_model='openai:<name>@<url>' for a server)")
    bench = resolve_benchmark(dataset, root=root, split=split)
    table = _videos_to_score(bench, videos)
    out = Path(out_dir)
    model_free = not METHOD_ROLES.get(method)  # then the profile does not matter
    sig = _signature(bench.name, method, "none" if model_free else resolve_profile(profile),
                     method_overrides)
    _claim(out, sig, overwrite)
    done = _done(out, table)
    todo = table[~table["name"].isin(done)].reset_index(drop=True)
    job = {"method": method, "profile": profile, "overrides": method_overrides,
           "cache": str(get_cache(cache).root),
           "preload": method != "lavad" if preload is None else preload}
    ray = dict(address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor,
               cpus_per_actor=cpus_per_actor) if executor == "ray" else None
    t0 = time.perf_counter()
    failed = _score_all(todo, out, job, progress, backends, ray) if len(todo) else []
    result = _evaluate(bench, table, out, sig, executor, time.perf_counter() - t0,
                       sorted(done), len(todo) - len(failed), failed)
    if result.failed:
        raise RunFailed(result)
    return result


def _videos_to_score(bench, videos: list[str] | None) -> pd.DataFrame:
    """The rows of ``bench.table`` to score (all, or the named ``videos``), checked up front."""
    table = bench.table  # not .videos: it decodes every video, and one bad file would stop all
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
    return table


def _claim(out: Path, sig: dict[str, Any], overwrite: bool) -> None:
    """Make ``out`` this run's folder; refuse (or with ``overwrite`` clear) another run's."""
    meta = out / "run.json"
    old = json.loads(meta.read_text()) if meta.exists() else sig
    if old != sig and not overwrite:
        diff = {k: (old.get(k), v) for k, v in sig.items() if old.get(k) != v}
        raise ValueError(f"{out} holds another run (differs in {diff}); choose another out_dir, "
                         "or pass overwrite=True to delete its scores and start again")
    for sub in ("frame_scores", "segments") if old != sig else ():
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(sig, indent=2))


def _evaluate(bench, table: pd.DataFrame, out: Path, sig: dict[str, Any], executor: str,
              wall: float, skipped: list[str], scored: int,
              failed: list[dict[str, str]]) -> RunResult:
    """Per-video and micro metrics of the scored videos; writes per_video.csv, summary.json."""
    scores = read_frame_scores(out)
    failed_names = {f["video"] for f in failed}
    names = [n for n in table["name"] if n not in failed_names]
    missing = [n for n in names if n not in scores]
    if missing:
        raise ValueError(f"{out}/frame_scores has no scores for {len(missing)} video(s) "
                         f"({missing[:5]}; expected files such as "
                         f"{_stem(missing[0])}.parquet): run again to score them")
    # anomalous training videos of weak supervision have no frame labels: a row, no metrics
    labels = {n: bench.frame_labels(n) for n in names if bench.has_frame_labels(n)}
    for n in labels:
        if len(scores[n]) != len(labels[n]):
            raise ValueError(f"{out}/frame_scores/{_stem(n)}.parquet has {len(scores[n])} "
                             f"scores but the video has {len(labels[n])} labelled frames; "
                             "delete the file to score the video again")
    evaluated = metrics.per_video(labels, {n: scores[n] for n in labels})
    per_video = evaluated.set_index("video") if len(evaluated) else pd.DataFrame(
        columns=["frames", "anomalous_frames", "auc", "ap", "mean_score"])
    per_video = per_video.reindex(names).rename_axis("video").reset_index()
    per_video["frames"] = [len(scores[n]) for n in names]
    metas = [json.loads((out / "segments" / f"{_stem(n)}.json").read_text()) for n in names]
    classes = bench.video_classes()
    per_video.insert(1, "label", [classes[n] for n in names])
    per_video["seconds"] = [m["seconds"] for m in metas]
    per_video["model_calls"] = [int(sum(c.get("calls", 0) for c in m["model_calls"]))
                                for m in metas]
    per_video["profile"] = [m["profile"] for m in metas]
    per_video.to_csv(out / "per_video.csv", index=False)
    profiles = sorted(set(per_video["profile"]))
    if len(profiles) != 1:  # no video scored: the signature's profile; several: "mixed"
        profiles = ["mixed"] if profiles else [sig["profile"]]
    meaningless = any(m["meaningless"] for m in metas)
    summary: dict[str, Any] = {
        **sig,
        "profile": profiles[0],
        "executor": executor, "videos": len(names), "videos_failed": len(failed),
        "failed": failed, "frames": int(per_video["frames"].sum()), "scored_now": scored,
        "resumed": len(skipped), "video_level_only": len(names) - len(labels),
        "auc": _micro(metrics.frame_auc, labels, scores),
        "ap": _micro(metrics.frame_ap, labels, scores),
        "meaningless": meaningless, "warning": TINY_WARNING if meaningless else "",
        "model_calls": _calls_by_role(metas), "wall_s": round(wall, 3),
        "video_seconds": float(per_video["seconds"].sum())}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return RunResult(out, summary, per_video, skipped, failed)


def _calls_by_role(metas: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Model calls, items and seconds summed per role over every video's ``model_calls``."""
    calls: dict[str, dict[str, float]] = {}
    for meta in metas:
        for entry in meta["model_calls"]:
            role = calls.setdefault(entry.get("role", "?"),
                                    {"calls": 0, "items": 0, "seconds": 0.0})
            for k in role:
                role[k] += entry.get(k, 0) or 0
    return calls


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


#: Test-set sizes of the two big benchmarks (REFERENCE: ~1.11 M frames, ~2.34 M).
BENCHMARK_SIZES: dict[str, dict[str, float]] = {
    "ucf_crime": {"frames": 1_110_000, "fps": 30.0},
    "xd_violence": {"frames": 2_340_000, "fps": 24.0},
}

#: ASSUMED (not measured) GPU seconds per call, batched: a T4 in fp16 with the colab models,
#: an A100 with the paper ones; replace them with ``vadnb.models.call_stats()``.
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
    """Model calls per minute of video with the Config defaults (training not included), one
    row per ``kind`` of :data:`SECONDS_PER_CALL`. ``captioners``: LAVAD's (the paper: 5);
    ``keywords``: AnyAnomaly's; ``"lavad-published"``: 5 captioners on every frame."""
    variants = {v: (m.name, o) for m in registry.methods() for v, o in m.cost_variants.items()}
    if method not in variants and method not in registry.names():
        raise ValueError(f"unknown method {method!r}; choose one of "
                         f"{sorted(registry.names()) + sorted(variants)}")
    name, extra = variants.get(method, (method, {}))
    cost = registry.get(name).cost
    rows = cost(fps, **{"captioners": captioners, "keywords": keywords, **extra}) if cost else []
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
    """GPU-hours per method to score ``frames`` frames at ``fps`` (``table``: built at that fps)."""
    minutes = frames / fps / 60.0
    return table.groupby("method", sort=False)[f"gpu_s_per_min_{profile}"].sum() * minutes / 3600.0

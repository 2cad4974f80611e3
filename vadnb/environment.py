"""``vadnb.setup()``: the first call of every notebook (notebook 00 explains it).

It picks the device and the model profile once, seeds the random generators, prints one
line (device, profile, torch and its threads, the cache folder) and returns an
:class:`Environment` for later cells; ``env.report()`` has the rest (each role's dtype,
every library version).
(The module is not called ``setup.py`` so that ``vadnb.setup`` is always the function.)
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import platform
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import cache_dir
from .models.profiles import resolve_profile

__all__ = ["Environment", "setup", "available_cores", "size_thread_pool", "silence_known_noise",
           "ProfileNeedsGPUError", "check_profile_fits", "host_memory_gb", "NOTEBOOK_METHODS",
           "notebook_roles", "downloads", "download_note", "keep_on_drive"]

#: The methods whose models each notebook loads (their roles come from vadnb.registry);
#: ``"*"``: every registered method (80, 85 and 90 can run any of them).
NOTEBOOK_METHODS: dict[str, tuple[str, ...]] = {
    "00": (), "10": (), "20": ("lavad",), "30": ("lavad",), "40": ("lavad",),
    "50": ("anomalyclip",), "60": ("anyanomaly",), "70": ("vera",), "75": ("flashback",),
    "80": ("*",), "85": ("*",), "90": ("*",),
}

#: Where ``keep_on_drive`` keeps the downloads and the cache on Colab.
DRIVE_ROOT = "/content/drive/MyDrive/vadnb"

#: Share of the host's memory one model's fp32 weights may take on a CPU run.
HOST_FIT_SHARE = 0.8


class ProfileNeedsGPUError(RuntimeError):
    """A real-model profile was asked for on a machine whose memory cannot hold its models."""

_LIBRARIES = ("torch", "transformers", "open_clip_torch", "opencv-python-headless",
              "numpy", "scikit-learn", "plotly", "ipywidgets")


@dataclass
class Environment:
    device: str
    profile: str
    cache_dir: Path
    versions: dict[str, str] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    threads: int = 0
    device_name: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def meaningless(self) -> bool:
        from .models.profiles import MEANINGLESS_PROFILES

        return self.profile in MEANINGLESS_PROFILES

    def line(self) -> str:
        """The one line ``setup()`` prints: device, profile, threads, torch, cache."""
        device = f"{self.device} ({self.device_name})" if self.device_name else self.device
        note = _PROFILE_NOTES.get(self.profile, "")
        return (f"vadnb: {device} · profile {self.profile}{note} · torch "
                f"{self.versions.get('torch', '?')}, {self.threads} thread"
                f"{'s' if self.threads != 1 else ''} · cache {self.cache_dir} "
                "(env.report() for dtypes and versions)")

    def report(self) -> str:
        """Everything ``setup()`` chose, one fact a line: why the threads, each role's dtype,
        every library version, which known log noise was silenced."""
        lines = [f"device : {self.device}" + (f" ({self.device_name})" if self.device_name
                                              else " (no CUDA GPU found)"),
                 f"profile: {self.profile}{_PROFILE_NOTES.get(self.profile, '')}"]
        why = self.notes.get("dtype_why", {})
        lines += [f"dtype  : {role:<26} {dtype:<9} {why.get(role, '')}".rstrip()
                  for role, dtype in self.dtypes.items()]
        lines.append(f"threads: torch uses {self.threads} ({self.notes.get('threads', '')})")
        lines.append(f"python : {platform.python_version()}; "
                     + ", ".join(f"{k} {v}" for k, v in self.versions.items()))
        lines.append(f"cache  : {self.cache_dir}  (set VADNB_CACHE to move it)")
        if self.notes.get("quieted"):
            lines.append(f"quiet  : silenced {self.notes['quieted']} (VADNB_VERBOSE=1 keeps them)")
        return "\n".join(lines)


#: what the profile means for the scores, said next to its name
_PROFILE_NOTES = {"tiny": " (random-init models: scores are meaningless)",
                  "cpu": " (real small LLM and text embedder, tiny image models: scores are "
                         "meaningless)"}


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def available_cores() -> int:
    """CPU cores this process may use: its CPU affinity, capped by a cgroup CPU quota
    (containers, CI runners), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def size_thread_pool() -> tuple[int, str]:
    """Set torch's intra-op thread pool to the cores available, unless told otherwise.

    ``OMP_NUM_THREADS`` (or ``VADNB_THREADS``), when set, wins; else one thread per core
    this process may use (:func:`available_cores`), never more, so the pool is not
    oversubscribed by counting cores the container cannot use. Returns ``(threads, why)``.
    """
    import torch

    for var in ("VADNB_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            torch.set_num_threads(int(value))
            return int(value), f"from ${var}"
    cores = available_cores()
    torch.set_num_threads(cores)
    return cores, "one per available core"

def host_memory_gb() -> float | None:
    """The machine's physical memory in GB (1e9 bytes), or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (AttributeError, ValueError, OSError):
        return None


def check_profile_fits(profile: str, device: str, ram_gb: float | None = None) -> None:
    """Refuse a real-model profile on a CPU whose memory cannot hold its largest model.

    On a CPU every model loads in fp32 (4 bytes a parameter): the ``colab`` profile's
    BLIP-2 and Qwen2.5-VL need ~15 GB each, and a Colab CPU runtime has 12.7 GB, so the
    kernel would die while loading, with no message. ``ram_gb``: the host's memory (default
    :func:`host_memory_gb`). Raises :class:`ProfileNeedsGPUError` naming the model.
    """
    from .models.profiles import MEANINGLESS_PROFILES, MODELS

    if str(device).startswith("cuda") or profile in MEANINGLESS_PROFILES or profile not in MODELS:
        return
    ram_gb = host_memory_gb() if ram_gb is None else ram_gb
    if ram_gb is None:
        return
    role, spec = max(MODELS[profile].items(), key=lambda kv: kv[1].params_b or 0.0)
    need_gb = (spec.params_b or 0.0) * 4
    if need_gb > HOST_FIT_SHARE * ram_gb:
        raise ProfileNeedsGPUError(
            f"profile {profile!r} needs a CUDA GPU here: no GPU was found, and on a CPU its "
            f"{role} model {spec.model} loads in fp32 (~{need_gb:.0f} GB), more than this "
            f"machine's {ram_gb:.1f} GB of memory can hold (the kernel would die while loading)."
            "\nWhat to do:\n"
            "  - on Colab: Runtime > Change runtime type > T4 GPU, then run the notebook again;\n"
            "  - or use PROFILE = \"cpu\" (a real small LLM) or \"tiny\" (runs anywhere; "
            "scores are meaningless).")


def notebook_roles(notebook: str) -> list[str]:
    """The profile-table entries (roles or variants) a notebook's methods load, in order.

    ``notebook``: its two-digit number ("20"). Read from each method's registered roles,
    so a method that starts using another model changes every notebook's list.
    """
    from . import registry

    key = str(notebook)[:2]
    if key not in NOTEBOOK_METHODS:
        raise ValueError(f"unknown notebook {notebook!r}; known: {sorted(NOTEBOOK_METHODS)}")
    roles: list[str] = []
    methods = NOTEBOOK_METHODS[key]
    for method in registry.names() if methods == ("*",) else methods:
        roles += [r for r in registry.get(method).roles.values() if r not in roles]
    return roles


def downloads(roles, profile: str = "colab") -> list[dict]:
    """What loading ``roles`` under ``profile`` downloads: one row per distinct model.

    Each row: ``model``, ``roles`` (that it plays), ``download_gb`` (estimated, see
    :mod:`vadnb.models.profiles`) and ``licence`` (what a user must know first). Models
    built locally (tiny) or shipped in a wheel count 0 GB.
    """
    from .models.profiles import model_spec

    rows: dict[str, dict] = {}
    for role in roles:
        spec = model_spec(role, profile)
        if spec.model.startswith("tiny:") or spec.download_gb <= 0:
            continue
        row = rows.setdefault(spec.model, {"model": spec.model, "roles": [],
                                           "download_gb": spec.download_gb,
                                           "licence": spec.licence})
        row["roles"].append(role)
    return list(rows.values())


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def download_note(notebook: str, profile: str = "colab") -> str:
    """The header sentence of a notebook that lists every download it makes (generated here
    from the profile table and the registry so it cannot drift; tests compare the headers)."""
    rows = downloads(notebook_roles(notebook), profile)
    if not rows:
        return "This notebook downloads no model (approximate size: 0 GB)."
    items = [f"{r['model']} ({'/'.join(r['roles'])}, ~{r['download_gb']:g} GB"
             + (f"; {r['licence']}" if r["licence"] else "") + ")" for r in rows]
    total = sum(r["download_gb"] for r in rows)
    several = NOTEBOOK_METHODS[str(notebook)[:2]] == ("*",)
    return (f'With `PROFILE = "{profile}"` this notebook downloads, once'
            + (", the models of the methods it runs" if several else "") + ": " + _join(items)
            + f": ~{total:.1f} GB in all (sizes approximate).")


def keep_on_drive(notebook: str, profile: str | None = None, root: str = DRIVE_ROOT,
                  mount: bool = True) -> dict[str, str]:
    """Keep vadnb's cache and the Hugging Face downloads on Google Drive (Colab).

    Each Colab notebook runs on a fresh machine; with this, the second notebook reuses the
    models and cached stages the first one saved instead of downloading ~26 GB again.
    Mounts Drive (it asks for permission), points ``VADNB_CACHE`` and ``HF_HOME`` there, and
    prints the space this notebook needs against Drive's free space. Call it before
    anything imports transformers or huggingface_hub (the Colab cell does): they read
    ``HF_HOME`` once, on import. Returns the variables it set.
    """
    import shutil
    import sys

    if mount:
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount(str(Path(root).parents[1]))
    late = [m for m in ("huggingface_hub", "transformers") if m in sys.modules]
    paths = {"VADNB_CACHE": str(Path(root) / "cache"), "HF_HOME": str(Path(root) / "huggingface")}
    for name, path in paths.items():
        Path(path).mkdir(parents=True, exist_ok=True)
        os.environ[name] = path
    name = (profile or os.environ.get("VADNB_PROFILE") or "colab").strip().lower()
    name = name if name in ("colab", "paper") else "colab"
    need = sum(r["download_gb"] for r in downloads(notebook_roles(notebook), name))
    every = sum(r["download_gb"] for r in downloads(
        sorted({r for k in NOTEBOOK_METHODS for r in notebook_roles(k)}), name))
    free = shutil.disk_usage(root).free / 1e9
    print(f"[vadnb] cache and model downloads kept on Google Drive in {root}\n"
          f"        space: this notebook ~{need:.1f} GB, every notebook together ~{every:.1f} GB "
          f"(profile {name}); Drive has {free:.1f} GB free.")
    if free < need:
        print(f"[vadnb] WARNING: Drive has less free space than this notebook downloads: free "
              f"~{need - free:.1f} GB on Drive, or set KEEP_ON_DRIVE = False.")
    if late:
        print(f"[vadnb] WARNING: {' and '.join(late)} were imported before keep_on_drive(): "
              "restart the runtime (Runtime > Restart session) so downloads go to Drive.")
    return paths


def silence_known_noise() -> list[str]:
    """Quiet the library chatter that says nothing to a student (called by :func:`setup`).

    Returns what was silenced, for setup's one-line note. Only known, harmless noise:
    FFmpeg's decoder log lines (vadnb.video reports unreadable frames itself), the
    transformers INFO/WARNING logs and its bars for reading checkpoints from disk, PyAV's
    log, and Ray's start-up note that token authentication is on. Never huggingface_hub's
    download bars: a 15 GB download with no output looks like a hang.
    (vadnb's own progress bars appear only for steps longer than a second.) Set ``VADNB_VERBOSE=1`` to keep everything.
    """
    if os.environ.get("VADNB_VERBOSE", "") not in ("", "0"):
        return []
    done = []
    # read by OpenCV's FFmpeg backend when it first opens a file: 8 = fatal errors only
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")
    done.append("FFmpeg decoder log")
    try:
        import av.logging

        # PyAV's own default: FFmpeg's log goes to a C callback that drops it. Never a
        # level (set_level(FATAL) etc.): that installs a Python callback, and FFmpeg's
        # decoding threads then need the GIL to log while the main thread holds it inside
        # container.close(), which deadlocks (tests/test_video_hang.py).
        av.logging.set_level(None)
        done.append("PyAV log")
    except (ImportError, AttributeError):
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        # transformers' own bars ("Loading weights", "Writing model shards": reading a
        # checkpoint from disk) go; transformers' switch also turns off huggingface_hub's
        # download bars, which must stay: a 15 GB download with no output looks like a hang
        hf_logging.disable_progress_bar()
        from huggingface_hub.utils import enable_progress_bars

        enable_progress_bars()
        done.append("transformers warnings and loading bars")
    except ImportError:
        pass
    for name in ("huggingface_hub", "sentence_transformers", "open_clip", "timm",
                 # a local Ray says, at start, that its token authentication is on (good)
                 "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return done


def setup(profile: str | None = None, seed: int = 0, quiet: bool = False) -> Environment:
    """Choose device and profile, seed everything, and print **one** line saying what was
    chosen (the rest, per-role dtypes and every library version, is ``env.report()``).

    ``profile``: "tiny", "colab", "paper" or "auto" (default: ``$VADNB_PROFILE``, else auto).
    """
    import torch

    quieted = silence_known_noise()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = resolve_profile(profile, verbose=False)  # the line below says the profile
    check_profile_fits(chosen, device)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    threads, threads_why = size_thread_pool()
    from .models import dtype_plan

    plan = dtype_plan(chosen, device)
    env = Environment(device=device, profile=chosen, cache_dir=folder,
                      versions={n: _version(n) for n in _LIBRARIES},
                      dtypes=dict(zip(plan.role, plan.dtype)), threads=threads,
                      device_name=torch.cuda.get_device_name(0) if device == "cuda" else "",
                      notes={"threads": threads_why, "quieted": ", ".join(quieted),
                             "dtype_why": dict(zip(plan.role, plan.why))})
    if not quiet:
        print(env.line())
    return env

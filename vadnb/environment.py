"""``vadnb.setup()``: the first call of every notebook (notebook 00 explains it).

It picks the device and the profile, seeds the generators, prints one line and returns an
:class:`Environment` (``env.report()`` has the rest); also the Colab helpers (Drive, downloads).
Not called ``setup.py`` so that ``vadnb.setup`` is always the function.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import platform
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import registry
from .cache import cache_dir
from .models import dtype_plan
from .models.profiles import MEANINGLESS_PROFILES, MODELS, model_spec, resolve_profile

__all__ = ["Environment", "setup", "available_cores", "silence_known_noise",
           "ProfileNeedsGPUError", "check_profile_fits", "host_memory_gb", "NOTEBOOK_METHODS",
           "notebook_roles", "downloads", "keep_on_drive"]

#: The methods whose models each notebook loads (their roles come from vadnb.registry);
#: ``"*"``: every registered method (80, 85 and 90 can run any of them).
NOTEBOOK_METHODS: dict[str, tuple[str, ...]] = {
    "00": (), "10": (), "20": ("lavad",), "30": ("lavad",), "40": ("lavad",),
    "50": ("anomalyclip",), "60": ("anyanomaly",), "70": ("vera",), "75": ("flashback",),
    "80": ("*",), "85": ("*",), "90": ("*",),
}


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
        """Everything ``setup()`` chose, one fact a line (dtypes, versions, silenced noise)."""
        why = self.notes.get("dtype_why", {})
        lines = [f"device : {self.device}" + (f" ({self.device_name})" if self.device_name
                                              else " (no CUDA GPU found)"),
                 f"profile: {self.profile}{_PROFILE_NOTES.get(self.profile, '')}",
                 *(f"dtype  : {role:<26} {dtype:<9} {why.get(role, '')}".rstrip()
                   for role, dtype in self.dtypes.items()),
                 f"threads: torch uses {self.threads} ({self.notes.get('threads', '')})",
                 f"python : {platform.python_version()}; "
                 + ", ".join(f"{k} {v}" for k, v in self.versions.items()),
                 f"cache  : {self.cache_dir}  (set VADNB_CACHE to move it)"]
        if self.notes.get("quieted"):
            lines.append(f"quiet  : silenced {self.notes['quieted']} (VADNB_VERBOSE=1 keeps them)")
        return "\n".join(lines)


#: What the profile means for the scores, said next to its name.
_PROFILE_NOTES = {"tiny": " (random-init models: scores are meaningless)",
                  "cpu": " (real small LLM and text embedder, tiny image models: scores are "
                         "meaningless)"}


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def available_cores() -> int:
    """CPU cores this process may use: its affinity, capped by a cgroup quota, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores or 1)


def host_memory_gb() -> float | None:
    """The machine's physical memory in GB (1e9 bytes), or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (AttributeError, ValueError, OSError):
        return None


def check_profile_fits(profile: str, device: str, ram_gb: float | None = None) -> None:
    """Raise :class:`ProfileNeedsGPUError` for a real-model profile on a CPU whose memory
    (``ram_gb``) cannot hold its largest model in fp32: the kernel would die silently."""
    ram_gb = host_memory_gb() if ram_gb is None else ram_gb
    if (str(device).startswith("cuda") or profile in MEANINGLESS_PROFILES
            or profile not in MODELS or ram_gb is None):  # None: the OS does not say
        return
    role, spec = max(MODELS[profile].items(), key=lambda kv: kv[1].params_b or 0.0)
    need_gb = (spec.params_b or 0.0) * 4
    if need_gb > 0.8 * ram_gb:  # the largest model may take 80% of the host's memory
        raise ProfileNeedsGPUError(
            f"profile {profile!r} needs a CUDA GPU here: no GPU was found, and on a CPU its "
            f"{role} model {spec.model} loads in fp32 (~{need_gb:.0f} GB), more than this "
            f"machine's {ram_gb:.1f} GB of memory can hold (the kernel would die while loading)."
            "\nWhat to do:\n"
            "  - on Colab: Runtime > Change runtime type > T4 GPU, then run the notebook again;\n"
            "  - or use PROFILE = \"cpu\" (a real small LLM) or \"tiny\" (runs anywhere; "
            "scores are meaningless).")


def notebook_roles(notebook: str) -> list[str]:
    """The profile-table entries a notebook ("20") loads, from its methods' registered roles."""
    key = str(notebook)[:2]
    if key not in NOTEBOOK_METHODS:
        raise ValueError(f"unknown notebook {notebook!r}; known: {sorted(NOTEBOOK_METHODS)}")
    methods = NOTEBOOK_METHODS[key]
    return list(dict.fromkeys(r for m in (registry.names() if methods == ("*",) else methods)
                              for r in registry.get(m).roles.values()))


def downloads(roles, profile: str = "colab") -> list[dict]:
    """What loading ``roles`` under ``profile`` downloads: one row (``model``, ``roles``,
    ``download_gb`` estimated, ``licence``) per distinct model; local models are left out."""
    rows: dict[str, dict] = {}
    for role in roles:
        spec = model_spec(role, profile)
        if not spec.model.startswith("tiny:") and spec.download_gb > 0:
            row = {"model": spec.model, "roles": [], "download_gb": spec.download_gb,
                   "licence": spec.licence}
            rows.setdefault(spec.model, row)["roles"].append(role)
    return list(rows.values())


def keep_on_drive(notebook: str, profile: str | None = None,
                  root: str = "/content/drive/MyDrive/vadnb", mount: bool = True) -> dict[str, str]:
    """Keep vadnb's cache and the Hugging Face downloads on Google Drive (Colab) and print the
    space needed; call it before anything imports transformers (it reads ``HF_HOME`` once)."""
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
    """Quiet known, harmless library chatter (FFmpeg, PyAV, transformers, Ray's start-up);
    never the download bars (a silent 15 GB download looks like a hang). Returns what was
    silenced; ``VADNB_VERBOSE=1`` keeps everything."""
    if os.environ.get("VADNB_VERBOSE", "") not in ("", "0"):
        return []
    # read by OpenCV's FFmpeg backend when it first opens a file: 8 = fatal errors only
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")
    done = ["FFmpeg decoder log"]
    try:
        import av.logging

        # PyAV's default (a C callback drops the log). Never a level: its Python callback
        # deadlocks inside container.close() (tests/test_video_hang.py).
        av.logging.set_level(None)
        done.append("PyAV log")
    except (ImportError, AttributeError):
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        # transformers' switch for its loading bars also turns off the hub's download bars
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
    chosen (the rest is ``env.report()``). ``profile``: "tiny", "colab", "paper" or "auto"
    (default: ``$VADNB_PROFILE``, else auto)."""
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
    # torch's threads: $VADNB_THREADS or $OMP_NUM_THREADS, else the cores this process may use
    # (never the host's count: oversubscribed)
    given = [(int(v), f"from ${var}") for var in ("VADNB_THREADS", "OMP_NUM_THREADS")
             if (v := os.environ.get(var, "").strip()).isdigit() and int(v) > 0]
    threads, threads_why = given[0] if given else (available_cores(), "one per available core")
    torch.set_num_threads(threads)
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

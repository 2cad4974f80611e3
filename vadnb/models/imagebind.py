"""The ``embedder`` role: ImageBind's vision, video and text embeddings (LAVAD's embedder).

``encode_video`` feeds a clip as consecutive 2-frame pairs (ImageBind's vision encoder reads
2-frame clips; an odd last frame is paired with itself) and averages the pair embeddings,
renormalised. Weights: ``"imagebind_huge"`` (4.5 GB, **CC BY-NC-SA 4.0, non-commercial**,
downloaded once, read with ``torch.load(weights_only=True)``) or a folder with
``imagebind_config.json`` + ``imagebind.safetensors`` (the tiny profile's). Without the
``imagebind`` package, :func:`load_embedder` falls back to an open_clip CLIP and says so.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import cache_dir
from .base import Backend, choose_dtype, clip_list, text_list, unit_rows
from .hub import ModelUnavailableError, hub_offline, is_local
from .profiles import IMAGEBIND_LICENCE
from .tiny import ensure_tiny

IMAGEBIND_HUGE_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
IMAGE_SIZE = 224  # fixed by ImageBind's vision preprocessor
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: ``ImageBindModel`` arguments of ImageBind huge (what ``imagebind_huge()`` builds), the
#: layout of the official checkpoint.
IMAGEBIND_HUGE = dict(vision_embed_dim=1280, vision_num_blocks=32, vision_num_heads=16,
                      text_embed_dim=1024, text_num_blocks=24, text_num_heads=16,
                      out_embed_dim=1024, audio_drop_path=0.1, imu_drop_path=0.7)

#: ``ImageBindModel`` arguments of the tiny embedder: every modality present, tiny widths.
TINY_IMAGEBIND = dict(out_embed_dim=32, vision_embed_dim=32, vision_num_blocks=1,
                      vision_num_heads=2, text_embed_dim=32, text_num_blocks=1, text_num_heads=2,
                      audio_embed_dim=16, audio_num_blocks=1, audio_num_heads=2,
                      depth_embed_dim=16, depth_num_blocks=1, depth_num_heads=2,
                      thermal_embed_dim=16, thermal_num_blocks=1, thermal_num_heads=2,
                      imu_embed_dim=16, imu_num_blocks=1, imu_num_heads=2)

#: How ImageBind's model code is installed: without its data loaders' dependencies (decord
#: has no wheel for macOS arm64 or Linux aarch64); the ``imagebind`` extra lists the rest.
IMAGEBIND_PIP = ("--no-deps", "imagebind-unofficial==0.1.1")


def import_imagebind():
    """Import ``imagebind.models.imagebind_model`` alone: the package's ``__init__`` imports
    data loaders that do not install everywhere, so the package is registered as a bare
    namespace over its folder (unless already imported)."""
    import importlib.util
    import types

    if "imagebind" not in sys.modules:
        spec = importlib.util.find_spec("imagebind")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the imagebind package is not installed: pip install "
                              + " ".join(IMAGEBIND_PIP) + " (and vadnb's [imagebind] extra)")
        package = types.ModuleType("imagebind")
        package.__file__ = spec.origin
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["imagebind"] = package
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from imagebind.models import imagebind_model
    return imagebind_model


def save_imagebind(model, config: dict[str, Any], out: Path) -> None:
    """Save an ``ImageBindModel`` as ``imagebind_config.json`` + ``imagebind.safetensors``."""
    from safetensors.torch import save_file

    (out / "imagebind_config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "imagebind.safetensors"))


def _huge_checkpoint() -> Path:
    """The official checkpoint in ``<cache_dir>/models/imagebind/``, downloaded if needed."""
    folder = cache_dir() / "models" / "imagebind"
    path = folder / "imagebind_huge.pth"
    if path.exists():
        return path
    if hub_offline():
        raise ModelUnavailableError(
            f"The embedder checkpoint imagebind_huge is not at {path} and this machine is "
            "offline (HF_HUB_OFFLINE=1 or no internet).\nWhat to do:\n"
            "  - run with profile='tiny' (small random models: the code runs, the scores are "
            "meaningless), or\n"
            f"  - download {IMAGEBIND_HUGE_URL} (4.5 GB) elsewhere and copy it to that local "
            "path, or\n"
            "  - load the embedder with model='ViT-B-16-quickgelu:openai' (CLIP fallback) from a "
            "filled Hugging Face cache.")
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    print(f"[vadnb] downloading ImageBind huge (4.5 GB) to {path} ...\n"
          f"[vadnb] ImageBind's {IMAGEBIND_LICENCE} (the code is MIT-licensed, the weights "
          "are not): https://github.com/facebookresearch/ImageBind#license")
    torch.hub.download_url_to_file(IMAGEBIND_HUGE_URL, str(tmp), progress=True)
    os.replace(tmp, path)
    return path


def build_from_state(ib: Any, config: dict[str, Any], state: dict[str, Any], source: str):
    """``ImageBindModel(**config)`` holding exactly the tensors of ``state``, built on the
    meta device (never 1.2 B random fp32 weights first: ~28 s, ~5 GB). Raises ``ValueError``
    naming ``source`` when the checkpoint does not fill every parameter."""
    from accelerate import init_empty_weights

    with init_empty_weights():  # parameters on the meta device; small buffers stay real
        net = ib.ImageBindModel(**config)
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise ValueError(f"{source} does not match ImageBindModel({config}): "
                         f"{str(err).splitlines()[0]}") from None
    empty = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if empty:
        raise ValueError(f"{source} leaves ImageBind tensors unset: {empty[:5]}")
    return net


class ImageBindEmbedder(Backend):
    """ImageBind behind the embedder calls (see the module docstring)."""

    role = "embedder"

    def __init__(self, model: str = "imagebind_huge", *, name: str | None = None,
                 profile: str = "custom", device: str = "cpu", dtype: Any = None,
                 batch_size: int = 32, meaningless: bool = False):
        super().__init__(name or model, profile=profile, device=device, batch_size=batch_size,
                         meaningless=meaningless)
        import torch
        from open_clip.transformer import LayerNormFp32

        ib = import_imagebind()
        import imagebind
        from imagebind.models.multimodal_preprocessors import SimpleTokenizer

        bpe = Path(imagebind.__file__).parent / "bpe" / "bpe_simple_vocab_16e6.txt.gz"
        if not bpe.exists():
            raise FileNotFoundError(f"ImageBind's BPE vocab is missing ({bpe}); reinstall "
                                    "imagebind-unofficial")

        if model == "imagebind_huge":
            ckpt = _huge_checkpoint()
            config = dict(IMAGEBIND_HUGE)
            try:  # memory-mapped: the 4.5 GB file is not copied into RAM a second time
                state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # a legacy (non-zip) checkpoint cannot be memory-mapped
                state = torch.load(ckpt, map_location="cpu", weights_only=True)
            source = str(ckpt)
        elif is_local(model) and (Path(model) / "imagebind_config.json").exists():
            from safetensors.torch import load_file

            folder = Path(model)
            config = json.loads((folder / "imagebind_config.json").read_text())
            state = load_file(str(folder / "imagebind.safetensors"))
            source = str(folder / "imagebind.safetensors")
        else:
            raise ValueError(f"unknown ImageBind model {model!r}: use 'imagebind_huge' or a "
                             "folder with imagebind_config.json + imagebind.safetensors")
        net = build_from_state(ib, config, state, source)
        del state
        self.dtype = choose_dtype(device, dtype, model)[0]
        self.model = net.to(device=device, dtype=self.dtype).eval()
        for module in self.model.modules():  # LayerNorm in fp32, as open_clip keeps CLIP's
            if type(module) is torch.nn.LayerNorm:  # half-precision statistics lose accuracy
                module.float()
                module.__class__ = LayerNormFp32
        self.modality = ib.ModalityType
        self.tokenizer = SimpleTokenizer(bpe_path=str(bpe))
        from .preprocess import BatchPreprocess

        self.batch_preprocess = BatchPreprocess(IMAGE_SIZE, CLIP_MEAN, CLIP_STD)
        self.dim = int(config["out_embed_dim"])

    def _batch(self, kind: str, items: list[Any]) -> list[np.ndarray]:
        """Unit rows for one batch of ``kind`` "image", "video" (clips of frames) or "text"."""
        import torch

        key = self.modality.TEXT if kind == "text" else self.modality.VISION
        if kind == "text":
            inputs = [torch.stack([self.tokenizer(t) for t in items])]
        elif kind == "image":
            inputs = [self.batch_preprocess.batch(items).to(self.dtype)]
        else:  # clips may differ in length: each is one [1, S, 3, 2, H, W] input
            inputs = []
            for clip in items:
                frames = list(clip) + ([clip[-1]] if len(clip) % 2 else [])
                x = self.batch_preprocess.batch(frames).to(self.dtype)  # [2S, 3, H, W]
                pairs = x.reshape(len(frames) // 2, 2, *x.shape[1:]).permute(0, 2, 1, 3, 4)
                inputs.append(pairs[None])
        with torch.inference_mode():
            return [row for x in inputs
                    for row in unit_rows(self.model({key: x.to(self.device)})[key])]

    def encode_image(self, images: Sequence[Any]) -> np.ndarray:
        """Frames -> float32 [N, D] (unit rows)."""
        return self._embed_all(functools.partial(self._batch, "image"), images,
                               "embedder images", self.dim)

    def encode_video(self, clips: Sequence[Sequence[Any]]) -> np.ndarray:
        """Clips (lists of frames, e.g. LAVAD's 10) -> float32 [N, D]: mean over 2-frame pairs."""
        return self._embed_all(functools.partial(self._batch, "video"), clip_list(clips),
                               "embedder videos", self.dim)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 [N, D] (unit rows), ImageBind's BPE (77 tokens, longer is cut)."""
        return self._embed_all(functools.partial(self._batch, "text"),
                               text_list(texts, "encode_text"), "embedder texts", self.dim)


def load_embedder(source: str, **kwargs) -> Backend:
    """ImageBind for ``imagebind_huge`` or an ImageBind folder (without the package: CLIP
    ViT-B/16, or the tiny CLIP, with a note); open_clip for anything else."""
    from .openclip import OpenClipEmbedder

    is_ib = source == "imagebind_huge" or (is_local(source) and
                                           (Path(source) / "imagebind_config.json").exists())
    if not is_ib:
        return OpenClipEmbedder(source, **kwargs)
    try:
        import_imagebind()
    except Exception:  # noqa: BLE001 - any import failure means "use the fallback"
        pass
    else:
        return ImageBindEmbedder(source, **kwargs)
    if kwargs.get("meaningless"):
        fallback, kwargs["name"] = str(ensure_tiny("clip")), "tiny:clip"
    else:
        fallback = kwargs["name"] = "ViT-B-16-quickgelu:openai"
    print(f"[vadnb] imagebind is not installed (pip install 'vadnb[imagebind]'); the embedder "
          f"falls back to CLIP {kwargs['name']} (video = mean of frame embeddings).")
    return OpenClipEmbedder(fallback, **kwargs)

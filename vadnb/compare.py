"""Run several methods over the same clips, each loading its models once (notebooks 80, 85).

:class:`MethodRunner` knows what each method's ``run`` takes besides the video (AnomalyCLIP a
checkpoint, AnyAnomaly typed descriptions, VERA questions, the baseline reference clips).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .detect import Detection
from .progress import bar
from .scale import load_backends, score_video

__all__ = ["CAMPUS_DESCRIPTIONS", "ROLES", "TINY_KNOBS", "campus_prompts", "availability",
           "MethodRunner", "detect_one"]

#: What a user would type to AnyAnomaly for each campus anomaly class.
CAMPUS_DESCRIPTIONS = {"Vehicle": "a vehicle driving on the grass",
                       "Running": "a person running",
                       "Fallen": "a person lying on the ground",
                       "Object left": "a box left on the ground"}

#: Per method: role -> profile entry loaded once for all clips (LAVAD loads its own).
ROLES: Mapping[str, dict[str, str]] = registry.view(
    lambda m: dict(m.roles) if m.keep_loaded and m.roles else None)


def campus_prompts(classes: Sequence[str]) -> list[str]:
    """One typed description per anomaly class (Normal left out), for AnyAnomaly."""
    return [CAMPUS_DESCRIPTIONS.get(c, c.lower()) for c in classes if c != "Normal"]


def availability(method: str) -> str:
    """``"ok"``, or why the method's module cannot be imported in this copy of the suite."""
    try:  # (an unknown method is a ValueError)
        importlib.import_module(registry.module_of(method))
    except ImportError as err:
        return f"not available ({err})"
    return "ok"


@dataclass
class MethodRunner:
    """Runs any method on a list of clips with the right inputs, loading its models once.
    knobs: per method, Config fields; clip: a loaded CLIP for AnomalyCLIP (kept loaded)."""

    profile: str | None = None
    cache: Any = None
    knobs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    checkpoint: str | os.PathLike | None = None
    clip: Any = None
    prompts: Sequence[str] | None = None
    questions: Sequence[str] | None = None
    progress: bool = True

    def arguments(self, method: str, reference: Sequence[str] | None = None) -> dict[str, Any]:
        """What ``method``'s ``run`` needs besides the video: its inputs and Config fields."""
        if method == "anomalyclip":  # the checkpoint carries the Config it was trained with
            if self.checkpoint is None:
                raise ValueError("AnomalyCLIP needs a trained checkpoint: train one "
                                 "(anomalyclip.train, notebook 50) and pass checkpoint=...")
            return {"checkpoint": self.checkpoint}
        if method == "anyanomaly" and not self.prompts:
            raise ValueError("AnyAnomaly needs at least one typed description: "
                             "pass prompts=[...] (e.g. campus_prompts(bench.classes))")
        inputs = {"classical": {"reference": reference}, "vera": {"questions": self.questions},
                  "anyanomaly": {"prompts": list(self.prompts or ())}}
        return {**inputs.get(method, {}), **self.knobs.get(method, {})}

    def run(self, method: str, paths: Sequence[str | os.PathLike],
            reference: Sequence[str] | None = None) -> list[Detection]:
        """One Detection per path, in the same order."""
        knobs = self.knobs.get(method, {})
        if method == "lavad":  # run_many goes stage by stage, one model loaded at a time
            from . import lavad

            return lavad.run_many(list(paths), profile=self.profile, cache=self.cache, **knobs)
        backends = ({"clip": self.clip} if method == "anomalyclip" and self.clip is not None
                    else load_backends(ROLES.get(method, {}), self.profile, knobs))
        try:
            return [score_video(p, method, profile=self.profile, backends=backends,
                                cache=self.cache, **self.arguments(method, reference))
                    for p in bar(list(paths), desc=f"{method} on {len(paths)} videos",
                                 disable=not self.progress or len(paths) < 2)]
        finally:
            for backend in backends.values():
                if backend is not self.clip:  # the caller's CLIP stays loaded
                    backend.release()


#: On the tiny profile, notebooks 50-80's small settings (random models write noise of any length).
TINY_KNOBS: dict[str, dict[str, Any]] = {"vera": {"image_size": 64, "max_new_tokens": 16},
                                         "anyanomaly": {"max_new_tokens": 8}}


def detect_one(video: str | os.PathLike, method: str, prompt: str | None = None, *,
               profile: str | None = None,
               checkpoint: str | os.PathLike | None = None) -> Detection:
    """One method on one video of yours: AnyAnomaly looks for ``prompt``, AnomalyCLIP needs
    ``checkpoint``; on the tiny profile :data:`TINY_KNOBS` apply."""
    registry.module_of(method)  # an unknown method is an error
    if method == "anyanomaly" and not (prompt or "").strip():
        raise ValueError("AnyAnomaly looks for what you type: give a prompt such as "
                         "'a person running'")
    runner = MethodRunner(profile=profile, knobs=TINY_KNOBS if profile == "tiny" else {},
                          checkpoint=checkpoint,
                          prompts=[prompt.strip()] if prompt and prompt.strip() else None,
                          progress=False)
    return runner.run(method, [str(video)])[0]

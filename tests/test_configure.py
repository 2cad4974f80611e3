"""Config validation (issues 15, 21, 22): pydantic checks types and the constraints beside
each field; configure's messages name the method and the field."""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from typing import Annotated
from typing import Literal

import pytest

from vadnb import stages

METHODS = {"classical": "vadnb.baseline", "lavad": "vadnb.lavad", "vera": "vadnb.vera",
           "anyanomaly": "vadnb.anyanomaly", "anomalyclip": "vadnb.anomalyclip"}


def _upper_bound(metadata) -> bool:
    return any(hasattr(m, "le") or hasattr(m, "lt") for m in metadata)


@pytest.mark.parametrize("module", METHODS.values())
def test_defaults_pass_and_every_count_has_an_upper_limit(module):
    """Every int setting (frames, pixels, tokens, neighbours, epochs...) is capped, so a
    typo such as 10**9 fails naming the field instead of exhausting memory."""
    mod = importlib.import_module(module)
    cfg = stages.configure(mod.Config, None, {}, module)
    assert dataclasses.asdict(cfg) == dataclasses.asdict(mod.Config())
    uncapped = []
    for name, info in mod.Config.__pydantic_fields__.items():
        hint = typing.get_type_hints(mod.Config)[name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if hint is int or args == [int]:
            # an optional count (``Annotated[int, Field(le=...)] | None``) has its limits
            # inside the union
            extras = typing.get_type_hints(mod.Config, include_extras=True)[name]
            inner = [m for a in typing.get_args(extras) if typing.get_origin(a) is Annotated
                     for f in a.__metadata__ for m in getattr(f, "metadata", [f])]
            ok = (_upper_bound(info.metadata) or _upper_bound(inner)
                  or name == "context_frames")  # must be 4
        elif typing.get_origin(hint) is tuple and args[:1] == [int]:
            inner = typing.get_args(info.annotation)[0]
            ok = _upper_bound(m for f in inner.__metadata__ for m in f.metadata)
        else:
            continue
        if not ok:
            uncapped.append(name)
    assert not uncapped, uncapped


@pytest.mark.parametrize("module, method, name, value, message", [
    ("vadnb.lavad", "LAVAD", "frames_per_window", 10**9,
     r"LAVAD: Config.frames_per_window must be in \[1, 256\], got 1000000000"),
    ("vadnb.vera", "VERA", "window_frames", 10**9, r"VERA: Config.window_frames must be in \[1, 256\]"),
    ("vadnb.baseline", "classical", "width", 10**6, r"classical: Config.width must be in \[16, 4096\]"),
    ("vadnb.anomalyclip", "AnomalyCLIP", "heads", 0, r"AnomalyCLIP: Config.heads must be in \[1, 256\], got 0"),
    ("vadnb.anyanomaly", "AnyAnomaly", "window_sizes", [], r"Config.window_sizes must hold at least 1 item"),
    ("vadnb.anyanomaly", "AnyAnomaly", "templates", [], r"Config.templates must hold at least 1 item"),
    ("vadnb.anyanomaly", "AnyAnomaly", "templates", ["a photo of a scene"],
     r"every value of Config.templates must hold exactly one \{\}.*got 'a photo of a scene'"),
    ("vadnb.anyanomaly", "AnyAnomaly", "weights", (0, 0, 0), r"Config.weights must not all be 0"),
    ("vadnb.anyanomaly", "AnyAnomaly", "other_classes", "fighting",
     r"Config.other_classes must be a list or tuple, not one string.*got 'fighting'"),
    ("vadnb.vera", "VERA", "round_decimals", -1, r"VERA: Config.round_decimals must be in \[0, 15\], got -1"),
    ("vadnb.lavad", "LAVAD", "llm_model", "", r"LAVAD: Config.llm_model must be a model id.*got ''"),
    ("vadnb.vera", "VERA", "vlm_model", "", r"VERA: Config.vlm_model must be a model id.*got ''"),
    ("vadnb.anyanomaly", "AnyAnomaly", "prompts", ["x" * 200_000],
     r"every value of Config.prompts must be at most 1000 characters long.*200000 characters"),
])
def test_issue_21_inputs_fail_naming_the_field(module, method, name, value, message):
    mod = importlib.import_module(module)
    with pytest.raises(ValueError, match=message):
        stages.configure(mod.Config, None, {name: value}, method)


@pytest.mark.parametrize("module, name, value, error, message", [
    ("vadnb.baseline", "z_scale", 0, ValueError, r"classical: Config.z_scale must be > 0, got 0"),
    ("vadnb.baseline", "width", 8, ValueError, r"classical: Config.width must be in \[16, 4096\], got 8"),
    ("vadnb.baseline", "width", 320.0, TypeError, r"Config.width must be int, got 320.0"),
    ("vadnb.lavad", "stride", 2.5, TypeError, r"LAVAD: Config.stride must be int, got 2.5 \(float\)"),
    ("vadnb.lavad", "window_s", math.nan, ValueError, r"LAVAD: Config.window_s must be a finite number"),
    ("vadnb.lavad", "window_s", math.inf, ValueError, r"Config.window_s must be a finite number"),
    ("vadnb.lavad", "refine_k", True, TypeError, r"Config.refine_k must be int, got True"),
    ("vadnb.lavad", "llm_model", 3, TypeError, r"Config.llm_model must be str \| None"),
    ("vadnb.vera", "ensemble_fraction", 1.5, ValueError, r"VERA: Config.ensemble_fraction must be in \[0, 1\]"),
    ("vadnb.vera", "image_size", 100_000, ValueError, r"Config.image_size must be in \[16, 4096\]"),
    ("vadnb.vera", "position_prior", "yes", TypeError, r"Config.position_prior must be bool"),
    ("vadnb.anyanomaly", "weights", (0.6, -0.3, 0.1), ValueError,
     r"AnyAnomaly: every value of Config.weights must be >= 0, got -0.3"),
    ("vadnb.anyanomaly", "weights", (0.6, 0.4), TypeError, r"Config.weights must be tuple"),
    ("vadnb.anyanomaly", "normalise", 1, TypeError, r"Config.normalise must be bool"),
    ("vadnb.anomalyclip", "lr", -1e-5, ValueError, r"AnomalyCLIP: Config.lr must be > 0"),
    ("vadnb.anomalyclip", "epochs", "50", TypeError, r"Config.epochs must be int, got '50'"),
])
def test_bad_values_are_refused_naming_method_and_field(module, name, value, error, message):
    mod = importlib.import_module(module)
    method = {"vadnb.baseline": "classical", "vadnb.lavad": "LAVAD", "vadnb.vera": "VERA",
              "vadnb.anyanomaly": "AnyAnomaly", "vadnb.anomalyclip": "AnomalyCLIP"}[module]
    with pytest.raises(error, match=message):
        stages.configure(mod.Config, None, {name: value}, method)


def test_a_config_given_whole_is_checked_too():
    from vadnb import lavad

    bad = lavad.Config()
    bad.window_s = math.nan  # changed after it was validated: only configure sees it
    with pytest.raises(ValueError, match=r"LAVAD: .*Config.window_s must be .*, got nan"):
        stages.configure(lavad.Config, bad, {}, "LAVAD")


def test_accepted_forms_stay_accepted():
    from vadnb import anyanomaly

    cfg = stages.configure(anyanomaly.Config, None,
                           {"prompts": "a person falling", "window_sizes": [48, 80],
                            "softmax_scale": 50, "sigma": 0}, "AnyAnomaly")
    assert cfg.prompts == ["a person falling"] and cfg.window_sizes == (48, 80)
    assert cfg.softmax_scale == 50  # an int is a fine float


@stages.config_dataclass
class _Toy:
    mode: Literal["fast", "exact"] = "fast"
    ratio: float | None = None


def test_literal_choices_and_finite_numbers():
    assert stages.configure(_Toy, None, {"mode": "exact", "ratio": 0.5}, "toy").mode == "exact"
    with pytest.raises(TypeError, match=r"toy: Config.mode must be one of \['fast', 'exact'\], got 'quick'"):
        stages.configure(_Toy, None, {"mode": "quick"}, "toy")
    with pytest.raises(ValueError, match="ratio must be a finite number"):
        stages.configure(_Toy, None, {"ratio": -math.inf}, "toy")
    with pytest.raises(TypeError, match=r"toy: Config.ratio must be float \| None, got '1' \(str\)"):
        stages.configure(_Toy, None, {"ratio": "1"}, "toy")


def test_configs_stay_dataclasses():
    """replace, fields, asdict, pickling and Config.field keep working on a pydantic Config,
    and replace validates too."""
    import pickle

    from vadnb import anyanomaly, lavad

    cfg = lavad.paper_config("ucf-crime", stride=8)
    assert pickle.loads(pickle.dumps(cfg)) == cfg and lavad.Config.stride == 16
    assert dataclasses.asdict(dataclasses.replace(cfg, refine_k=5))["refine_k"] == 5
    assert [f.name for f in dataclasses.fields(cfg)][:2] == ["stride", "window_s"]
    with pytest.raises(ValueError, match="stride"):
        dataclasses.replace(cfg, stride=0)
    assert anyanomaly.Config(prompts=" a fall ").prompts == ["a fall"]


def test_a_method_refuses_a_bad_setting_before_any_work(tmp_path):
    import vadnb
    from vadnb import models

    models.reset_load_stats()
    video = next((vadnb.detect.__globals__["Path"](__file__).parents[1] / "data" / "campus"
                  / "videos").glob("*.mp4"))
    with pytest.raises(ValueError, match="classical: Config.z_scale must be > 0"):
        vadnb.baseline.run(video, z_scale=0, cache=tmp_path)
    with pytest.raises(TypeError, match="LAVAD: Config.stride must be int"):
        vadnb.lavad.run(video, stride=2.5, cache=tmp_path)
    assert models.load_stats().empty


def test_a_huge_prompt_fails_before_any_model_loads(tmp_path):
    """Prompts enter through run(prompts=...) and detect(..., prompts=...): both go through
    the Config, so a pasted 200,000-character text is refused before CLIP tokenises it."""
    import vadnb
    from vadnb import anyanomaly, models

    models.reset_load_stats()
    video = next((vadnb.detect.__globals__["Path"](__file__).parents[1] / "data" / "campus"
                  / "videos").glob("*.mp4"))
    huge = "a person falling " * 12_000
    with pytest.raises(ValueError, match=r"AnyAnomaly: every value of Config.prompts must be "
                                         r"at most 1000 characters long"):
        anyanomaly.run(video, prompts=[huge], cache=tmp_path)
    with pytest.raises(ValueError, match=r"AnyAnomaly: every value of Config.prompts"):
        vadnb.detect(video, method="anyanomaly", prompts=huge, cache=tmp_path)
    assert models.load_stats().empty


def test_a_rejected_value_is_shown_without_its_credential():
    """A served model's URL pasted into the wrong field is named in the error, its password
    masked (the error ends up in notebooks and logs)."""
    from vadnb import lavad
    from vadnb.stages import configure

    url = "openai:m@http://me:p@ss/w0rd@gpu-box:8000/v1"
    with pytest.raises(TypeError, match="LAVAD: Config.stride must be int") as err:
        configure(lavad.Config, None, {"stride": url}, "LAVAD")
    assert "p@ss/w0rd" not in str(err.value) and "gpu-box" in str(err.value)

"""Benchmarks: the campus mini-benchmark and parsers for the public ones (notebook 00)."""

from __future__ import annotations

import pandas as pd

from .benchmarks import (SHT_CLASSES, UCF_CLASSES, XD_CLASSES, AnnotationError, Benchmark,
                         count_frames, intervals_to_labels, load_avenue, load_shanghaitech,
                         load_ubnormal, load_ucf_crime, load_xd_violence, parse_ucf_annotations,
                         read_text, split_validation, xd_codes)
from .campus import campus_root, load_campus, verify_checksums
from .converted import LAVAD_CLASS_IDS, load_lavad_annotations, load_vera_annotations
from .cvad import CVAD_TYPES, cvad_keywords, cvad_multi_type_videos, cvad_types, load_cvad
from .samples import SAMPLE_LAYOUTS, write_sample

__all__ = [
    "AnnotationError", "Benchmark", "campus_root", "count_frames", "cvad_keywords",
    "cvad_multi_type_videos", "CVAD_TYPES", "cvad_types", "intervals_to_labels",
    "LAVAD_CLASS_IDS", "load_avenue", "load_campus", "load_cvad", "load_lavad_annotations",
    "load_shanghaitech", "load_ubnormal", "load_ucf_crime", "load_vera_annotations",
    "load_xd_violence", "parse_ucf_annotations", "protocol_table", "read_text",
    "SAMPLE_LAYOUTS", "SHT_CLASSES", "split_validation", "UCF_CLASSES", "verify_checksums",
    "write_sample", "XD_CLASSES", "xd_codes",
]


def protocol_table(method: str | None = None) -> pd.DataFrame:
    """Which method was evaluated on which benchmark, how, and what its paper reported (in %;
    the papers' numbers, never measured here), of one method if given (notebooks 80, 90).
    ``ap_variant``: "step" is sklearn's ``average_precision_score``, "trapezoid" is
    ``auc(recall, precision)`` (LAVAD's and VERA's scripts; differs when scores tie)."""
    from .. import registry

    # read from each method's declaration at call time, so a method registered later appears
    table = pd.DataFrame([{"method": m.name, **row} for m in registry.methods()
                          for row in m.protocols])
    if method is not None:
        known = sorted(table["method"].unique())
        if method not in known:
            raise ValueError(f"no protocol rows for method {method!r}; methods are {known}")
        table = table[table["method"] == method].reset_index(drop=True)
    return table

"""Benchmarks: the campus mini-benchmark and parsers for the public ones (notebook 00)."""

from .benchmarks import (SHT_CLASSES, UCF_CLASSES, XD_CLASSES, AnnotationError, Benchmark,
                         count_frames, intervals_to_labels, load_avenue, load_shanghaitech,
                         load_ubnormal, load_ucf_crime, load_xd_violence, parse_ucf_annotations,
                         read_text, split_validation, xd_codes)
from .campus import campus_root, load_campus, verify_checksums
from .converted import LAVAD_CLASS_IDS, load_lavad_annotations, load_vera_annotations
from .cvad import CVAD_TYPES, cvad_keywords, cvad_multi_type_videos, cvad_types, load_cvad
from .protocols import protocol_table
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

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
    "AnnotationError", "Benchmark", "LAVAD_CLASS_IDS", "SAMPLE_LAYOUTS", "SHT_CLASSES",
    "UCF_CLASSES", "XD_CLASSES", "campus_root", "count_frames", "intervals_to_labels",
    "load_avenue", "load_campus", "load_lavad_annotations", "load_shanghaitech",
    "load_ubnormal", "load_ucf_crime", "load_vera_annotations", "load_xd_violence",
    "parse_ucf_annotations", "protocol_table", "read_text", "split_validation",
    "verify_checksums", "write_sample", "xd_codes",
    # C-ShT / C-Ave, AnyAnomaly's per-type label sets (vadnb.data.cvad)
    "CVAD_TYPES", "cvad_keywords", "cvad_multi_type_videos", "cvad_types", "load_cvad",
]

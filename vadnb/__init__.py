"""vadnb: video anomaly detection with vision-language models, as notebooks that run.

``notebooks/`` teach the methods; this package holds their code (README.md maps it), and
:func:`detect` runs any method on any video.
"""

from .detect import Detection, detect
from .environment import setup
from .video import VideoError

__version__ = "0.1.0"
__all__ = ["Detection", "detect", "run_dataset", "setup", "VideoError", "__version__"]


def __getattr__(name: str):
    # run_dataset pulls in pandas I/O and (optionally) Ray: import it only when asked for
    if name == "run_dataset":
        from .scale import run_dataset

        return run_dataset
    raise AttributeError(f"module 'vadnb' has no attribute {name!r}")

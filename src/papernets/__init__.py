"""papernets: the landmark image-classification architectures from their papers, trained and benchmarked."""

import os as _os
import sys as _sys

try:
    from papernets import models  # noqa: F401  (importing the model files registers every model)
    from papernets._version import __version__
    from papernets.api import Run, load, train
    from papernets.registry import create_model, list_models, model_info
except KeyboardInterrupt:  # Ctrl-C while the command line starts (importing torch): one line, exit 130
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("papernets", "-m", "__main__.py"):
        _sys.stderr.write("papernets: interrupted while starting\n")
        raise SystemExit(130) from None
    raise

__all__ = ["__version__", "create_model", "list_models", "model_info", "train", "load", "Run"]

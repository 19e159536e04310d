"""papernets: the landmark image-classification architectures from their papers, trained and benchmarked."""

import os as _os
import sys as _sys

_CLI = _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("papernets", "-m", "__main__.py")


def _interrupted_while_starting(signum, frame):  # pragma: no cover (tested in a subprocess)
    # Ctrl-C while the command line imports torch: a signal handler, not only a KeyboardInterrupt, since code
    # inside the imports can catch and drop a KeyboardInterrupt (a bare ``except:``); nothing is written yet.
    _sys.stderr.write("papernets: interrupted while starting\n")
    _sys.stderr.flush()
    _os._exit(130)


_previous_sigint = None
if _CLI:
    import signal as _signal

    try:  # a SIGINT the parent ignores (a background job, nohup) stays ignored, as Python leaves it
        if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
            _previous_sigint = _signal.signal(_signal.SIGINT, _interrupted_while_starting)
    except ValueError:  # not the main thread
        pass
try:
    from papernets import models  # noqa: F401  (importing the model files registers every model)
    from papernets._version import __version__
    from papernets.api import Run, load, train
    from papernets.registry import create_model, list_models, model_info
except KeyboardInterrupt:  # Ctrl-C while the command line starts (importing torch): one line, exit 130
    if _CLI:
        _sys.stderr.write("papernets: interrupted while starting\n")
        raise SystemExit(130) from None
    raise
finally:
    if _previous_sigint is not None:
        _signal.signal(_signal.SIGINT, _previous_sigint)

__all__ = ["__version__", "create_model", "list_models", "model_info", "train", "load", "Run"]

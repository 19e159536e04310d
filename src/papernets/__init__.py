"""papernets: the landmark image-classification architectures from their papers, trained and benchmarked."""

from papernets import models  # noqa: F401  (importing the model files registers every model)
from papernets._version import __version__
from papernets.api import Run, load, train
from papernets.registry import create_model, list_models, model_info

__all__ = ["__version__", "create_model", "list_models", "model_info", "train", "load", "Run"]

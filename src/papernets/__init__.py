"""papernets: the landmark image-classification architectures from their papers, trained and benchmarked."""

from papernets.registry import create_model, list_models, model_info

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "model_info"]

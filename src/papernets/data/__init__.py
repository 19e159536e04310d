"""Datasets (sources, offline resolution, splits), batched tensor transforms and the in-memory loader."""

from papernets.data.datasets import DatasetError, Splits, dataset_names, load_dataset
from papernets.data.loader import TensorLoader

__all__ = ["DatasetError", "Splits", "TensorLoader", "dataset_names", "load_dataset"]

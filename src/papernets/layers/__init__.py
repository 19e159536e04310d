"""Building blocks shared by several papers. A block used by one paper stays in that paper's file."""

from papernets.layers.classifier import Classifier, ClassifierModel
from papernets.layers.conv import ConvNormAct, make_divisible
from papernets.layers.drop import DropPath, drop_path
from papernets.layers.interface import ModelBase, ModelInterface, small_form
from papernets.layers.mlp import Mlp
from papernets.layers.patch import PatchEmbed, check_patches
from papernets.layers.squeeze_excite import SqueezeExcite

__all__ = ["Classifier", "ClassifierModel", "ConvNormAct", "DropPath", "Mlp", "ModelBase", "ModelInterface",
           "PatchEmbed", "SqueezeExcite", "check_patches", "drop_path", "make_divisible", "small_form"]

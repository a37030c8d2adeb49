"""Model adapters: one small protocol, run by Keras or (MODEL=no_tf) by pure numpy.

Importing this package never imports TensorFlow; only Keras adapters and .keras loading do.
"""

from gridd.models.base import ModelAdapter, WeightsError, WeightSpec, average_weights, check_weights
from gridd.models.keras_model import (
    KerasModel,
    UnsafeModelError,
    build_model,
    check_keras_config,
    load_keras_file,
    save_keras_bytes,
    tensorflow_available,
)
from gridd.models.numpy_model import NumpyModel
from gridd.models.recipe import Recipe

__all__ = [
    "KerasModel",
    "ModelAdapter",
    "NumpyModel",
    "Recipe",
    "UnsafeModelError",
    "WeightSpec",
    "WeightsError",
    "average_weights",
    "build_model",
    "check_keras_config",
    "check_weights",
    "load_keras_file",
    "save_keras_bytes",
    "tensorflow_available",
]

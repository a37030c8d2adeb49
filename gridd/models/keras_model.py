"""Keras adapter, safe .keras loading, and the factory that picks an adapter.

TensorFlow is imported inside functions only: `import gridd.models` must work on a
MODEL=no_tf peer, and importing TF costs seconds and hundreds of MB.

A .keras file from the network is inspected (its config.json, as JSON) before Keras
deserializes anything: Lambda layers and objects from outside Keras are refused, then the
file is loaded with safe_mode=True as a second line of defence.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gridd.models.base import (
    ModelAdapter,
    WeightSpec,
    check_weights,
    check_xy,
    resolve_fit_args,
    spec_of,
)
from gridd.models.numpy_model import NumpyModel, glorot_uniform, layer_sizes
from gridd.models.recipe import Recipe

if TYPE_CHECKING:
    import keras

MAX_CONFIG_BYTES = 16 * 1024 * 1024  # config.json of a huge model is still only a few MB
PREFERENCES = ("auto", "numpy", "keras")


class UnsafeModelError(ValueError):
    """A .keras model that would run code from the network (Lambda layers, custom objects)."""


# -- safe loading -------------------------------------------------------------------------


def _walk(node: Any, path: str = "config") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _lambda_refusal(name: Any) -> str:
    return f"model contains a Lambda layer {name!r}; gridd refuses to run code from the network"


def _is_keras_module(module: Any) -> bool:
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def check_keras_config(config: Any) -> None:
    """Raise UnsafeModelError if a .keras config.json names a Lambda or a non-Keras object.

    Keras serializes every object as {"module", "class_name", "config", "registered_name"};
    builtins have a keras.* module (or none, for plain values) and no "package>Name"
    registered name, which is exactly what custom_objects / register_keras_serializable add.
    """
    for where, node in _walk(config):
        class_name = node.get("class_name")
        if class_name == "Lambda":
            cfg = node.get("config")
            name = cfg.get("name") if isinstance(cfg, dict) else None
            raise UnsafeModelError(_lambda_refusal(name))
        if class_name == "__lambda__":  # Python bytecode, wherever it is hidden
            raise UnsafeModelError(
                f"model contains a serialized Python function (at {where}); "
                "gridd refuses to run code from the network"
            )
        registered = node.get("registered_name")
        if isinstance(registered, str) and ">" in registered:
            raise UnsafeModelError(
                f"model contains the custom object {registered!r} (at {where}); "
                "gridd refuses custom objects from the network"
            )
        if "module" in node and node["module"] is not None and not _is_keras_module(node["module"]):
            raise UnsafeModelError(
                f"model contains {class_name!r} from module {node['module']!r} (at {where}); "
                "gridd only loads Keras' own layers and refuses custom objects from the network"
            )


def _read_config(data: bytes | Path) -> dict[str, Any]:
    source: Any = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with zipfile.ZipFile(source) as zf:
            try:
                info = zf.getinfo("config.json")
            except KeyError:
                raise UnsafeModelError("not a .keras file: config.json is missing") from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise UnsafeModelError(
                    f"config.json is {info.file_size} bytes, over the {MAX_CONFIG_BYTES} limit"
                )
            with zf.open(info) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
    except zipfile.BadZipFile as e:
        raise UnsafeModelError(f"not a .keras file (bad zip): {e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UnsafeModelError(f"config.json is over the {MAX_CONFIG_BYTES} byte limit")
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnsafeModelError(f"not a .keras file: config.json is not JSON ({e})") from None
    if not isinstance(config, dict):
        raise UnsafeModelError("not a .keras file: config.json is not an object")
    return config


def load_keras_file(
    path_or_bytes: str | os.PathLike[str] | bytes, *, compile: bool = True
) -> keras.Model:
    """Load a .keras model from a path or bytes after refusing unsafe content.

    Raises UnsafeModelError for Lambda layers, custom objects, or a file that is not a
    .keras archive. `compile=False` skips the saved optimizer/loss (the recipe recompiles).
    """
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes)
    check_keras_config(_read_config(data))
    import keras

    with tempfile.TemporaryDirectory(prefix="gridd-keras-") as tmp:
        if isinstance(data, bytes):
            path = Path(tmp) / "model.keras"
            path.write_bytes(data)
        elif data.suffix != ".keras":  # Keras dispatches on the suffix
            path = Path(tmp) / "model.keras"
            path.write_bytes(data.read_bytes())
        else:
            path = data
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Lambda):
            raise UnsafeModelError(_lambda_refusal(layer.name))
    return model


def _all_layers(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _all_layers(layer)


def save_keras_bytes(model: keras.Model) -> bytes:
    """The model as the bytes of a .keras file (what travels through IPFS)."""
    with tempfile.TemporaryDirectory(prefix="gridd-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes()


# -- the adapter --------------------------------------------------------------------------


def build_keras_model(recipe: Recipe, seed: int = 0) -> keras.Model:
    """The builtin architecture as an uncompiled Keras model (glorot kernels seeded per layer)."""
    import keras

    if recipe.architecture == "keras":
        raise ValueError(
            "recipe.architecture: 'keras' has no builtin definition; pass the loaded model"
        )
    inputs = keras.Input(shape=recipe.input_shape, name="input")
    h = keras.layers.Flatten(name="flatten")(inputs) if len(recipe.input_shape) > 1 else inputs
    for i, width in enumerate(recipe.hidden_layers()):
        init = keras.initializers.GlorotUniform(seed=seed + i)
        h = keras.layers.Dense(
            width, activation="relu", kernel_initializer=init, name=f"dense_{i}"
        )(h)
    init = keras.initializers.GlorotUniform(seed=seed + len(recipe.hidden_layers()))
    outputs = keras.layers.Dense(
        recipe.classes, activation="softmax", kernel_initializer=init, name="output"
    )(h)
    return keras.Model(inputs, outputs, name=recipe.architecture)


def _optimizer(recipe: Recipe) -> Any:
    import keras

    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=recipe.learning_rate)
    return keras.optimizers.SGD(learning_rate=recipe.learning_rate)


class KerasModel:
    """A Keras model driven by a recipe: compiled with its optimizer, loss and metric."""

    def __init__(
        self,
        recipe: Recipe,
        model: keras.Model | None = None,
        *,
        weights: Sequence[np.ndarray] | None = None,
        seed: int = 0,
    ) -> None:
        self.recipe = recipe
        self.model = build_keras_model(recipe, seed) if model is None else model
        in_shape = (
            tuple(self.model.input_shape[1:])
            if not isinstance(self.model.input_shape, list)
            else None
        )
        if in_shape != recipe.input_shape:
            raise ValueError(
                f"recipe.input_shape: {recipe.input_shape} but the model takes "
                f"{self.model.input_shape}"
            )
        out_shape = self.model.output_shape
        if isinstance(out_shape, list) or out_shape[-1] != recipe.classes:
            raise ValueError(f"recipe.classes: {recipe.classes} but the model outputs {out_shape}")
        self.model.compile(optimizer=_optimizer(recipe), loss=recipe.loss, metrics=[recipe.metric])
        self._spec: WeightSpec = spec_of(self.model.get_weights())
        if model is None and weights is None:
            # Same seeded start as NumpyModel, so the adapter choice never changes a run.
            weights = glorot_uniform(layer_sizes(recipe), seed)
        if weights is not None:
            self.set_weights(weights)

    def weight_spec(self) -> WeightSpec:
        return list(self._spec)

    def get_weights(self) -> list[np.ndarray]:
        return [np.array(w, copy=True) for w in self.model.get_weights()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        check_weights(self._spec, weights)
        self.model.set_weights(list(weights))

    def predict(self, x: np.ndarray) -> np.ndarray:
        x, _ = check_xy(self.recipe, x)
        return np.asarray(self.model.predict(x, batch_size=1024, verbose=0))

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int | None = None,
        batch_size: int | None = None,
        seed: int | None = None,
    ) -> dict[str, float]:
        """model.fit with the recipe defaults; `seed` fixes Keras' global RNGs (shuffle order)."""
        import keras

        x, y = check_xy(self.recipe, x, y)
        epochs, batch_size = resolve_fit_args(self.recipe, epochs, batch_size)
        if seed is not None:
            keras.utils.set_random_seed(seed)
        history = self.model.fit(
            x, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0
        )
        last = {key: float(values[-1]) for key, values in history.history.items()}
        return {"loss": last["loss"], self.recipe.metric: last[self.recipe.metric]}

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        x, y = check_xy(self.recipe, x, y)
        result = self.model.evaluate(x, y, batch_size=1024, verbose=0, return_dict=True)
        return {
            "loss": float(result["loss"]),
            self.recipe.metric: float(result[self.recipe.metric]),
        }


# -- choosing an adapter -------------------------------------------------------------------


def _no_tf() -> bool:
    return os.environ.get("MODEL", "").strip().lower() == "no_tf"


def tensorflow_available() -> bool:
    """True when TensorFlow is installed and MODEL=no_tf is not set."""
    return not _no_tf() and importlib.util.find_spec("tensorflow") is not None


def build_model(
    recipe: Recipe,
    weights: Sequence[np.ndarray] | None = None,
    prefer: str = "auto",
    *,
    keras_model: keras.Model | bytes | str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> ModelAdapter:
    """The adapter a peer should run for `recipe`.

    "auto" uses Keras when TensorFlow is importable and numpy otherwise; MODEL=no_tf in the
    environment forces numpy whatever `prefer` says. Recipes with architecture "keras" need
    `keras_model` (a loaded model, or .keras bytes/path, loaded safely) and TensorFlow.
    Builtin architectures start from the same seeded weights under either adapter.
    """
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer: {prefer!r} is not one of {PREFERENCES}")
    if recipe.architecture == "keras":
        if keras_model is None:
            raise ValueError("keras_model: required for a recipe with architecture 'keras'")
        if not tensorflow_available():
            raise ValueError(
                "recipe.architecture: 'keras' models need TensorFlow "
                "(MODEL=no_tf is set or TF is not installed)"
            )
        if isinstance(keras_model, (bytes, str, os.PathLike)):
            keras_model = load_keras_file(keras_model, compile=False)
        return KerasModel(recipe, keras_model, weights=weights, seed=seed)
    if keras_model is not None:
        raise ValueError(
            f"keras_model: only used with architecture 'keras', not {recipe.architecture!r}"
        )
    if _no_tf() or prefer == "numpy":
        return NumpyModel(recipe, weights=weights, seed=seed)
    if tensorflow_available():
        return KerasModel(recipe, weights=weights, seed=seed)
    if prefer == "keras":
        raise ValueError("prefer: 'keras' but TensorFlow is not installed")
    return NumpyModel(recipe, weights=weights, seed=seed)

"""Keras adapter, safe .keras loading, and the factory that picks an adapter.

TensorFlow is imported inside functions only: `import gridd.models` must work on a
MODEL=no_tf peer, and importing TF costs seconds and hundreds of MB.

A .keras file from the network is inspected (its config.json, as JSON) before Keras
deserializes anything: only Keras' modeling objects are allowed (no Lambda, no custom
objects, no keras.utils / keras.models / keras.saving / keras.ops), the model is sized
(keras_budget) and refused over a parameter limit, and the weights entry may not declare
more bytes than that size needs; then it is loaded with safe_mode=True as a second line of
defence.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import fields
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
from gridd.models.keras_budget import (
    DEFAULT_MAX_PARAMS,
    LAYER_KINDS,
    Budget,
    UnsizableModelError,
    check_weights_entry,
    estimate,
)
from gridd.models.numpy_model import NumpyModel, glorot_uniform, layer_sizes
from gridd.models.recipe import Recipe

if TYPE_CHECKING:
    import keras

MAX_CONFIG_BYTES = 16 * 1024 * 1024  # config.json of a huge model is still only a few MB
MAX_METADATA_BYTES = 64 * 1024  # metadata.json: Keras version and date
PREFERENCES = ("auto", "numpy", "keras")
CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"

# What a model file may name, from inspecting files the pinned Keras saves (Sequential and
# Functional, compiled with common optimizers, losses and metrics). Keras resolves a
# "module" + "class_name" pair by importing it, so anything broader (keras.utils.get_file,
# keras.models.load_model, keras.saving..., keras.ops) is how safe_mode has been bypassed.
FAMILIES = frozenset({
    "keras.activations", "keras.constraints", "keras.initializers", "keras.losses",
    "keras.metrics", "keras.optimizers", "keras.optimizers.schedules", "keras.regularizers",
})  # any class or function of these, except the helpers below
MODEL_OBJECTS = {
    "keras": frozenset({"Sequential", "DTypePolicy"}),
    "keras.src.models.functional": frozenset({"Functional"}),
}
HELPERS = frozenset({"deserialize", "serialize", "get"})  # they deserialize what they are given
# Markers Keras decodes itself (values, not imports); any other object must name its module,
# or Keras falls back to its legacy deserializer.
VALUE_MARKERS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__",
                           "__ellipsis__", "__slice__"})


class UnsafeModelError(ValueError):
    """A .keras model gridd refuses to load: it could run code from the network (Lambda
    layers, custom objects, non-modeling Keras APIs) or cannot be sized before it is built."""


class ModelTooLargeError(UnsafeModelError):
    """A .keras model that declares more parameters than the loader allows."""

    def __init__(self, params: int, limit: int) -> None:
        super().__init__(f"the model declares {params} parameters, over the limit of {limit} "
                         "parameters (counted from its config.json, before building it)")
        self.params = params
        self.limit = limit


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


def _module_refusal(node: dict[str, Any], where: str) -> str | None:
    """Why the object `node` names may not be loaded, or None if it may."""
    module, name = node["module"], node.get("class_name")
    if name == "function":  # a function by name: the name is in "config"
        name = node.get("config")
        if module != "builtins" and module not in FAMILIES or not isinstance(name, str):
            return (f"model contains the function {name!r} from module {module!r} "
                    f"(at {where}); gridd only loads activations, losses and metrics by name")
    elif module in MODEL_OBJECTS:
        if name in MODEL_OBJECTS[module]:
            return None
        return (f"model contains {name!r} from module {module!r} (at {where}); from {module!r} "
                f"gridd only loads {sorted(MODEL_OBJECTS[module])}")
    elif module == "keras.layers":
        if name in LAYER_KINDS:
            return None
        return (f"model contains the layer {name!r} (at {where}), which gridd does not load "
                f"(it loads: {', '.join(sorted(LAYER_KINDS))})")
    elif module not in FAMILIES:
        return (f"model contains {name!r} from module {module!r} (at {where}); gridd only "
                "loads Keras' own layers, activations, initializers, losses, metrics, "
                "optimizers, regularizers and constraints, and refuses everything else")
    if name in HELPERS:
        return (f"model names {module}.{name} (at {where}), a deserialization helper; "
                "gridd refuses it")
    return None


def check_keras_config(config: Any) -> None:
    """Raise UnsafeModelError if a .keras config.json names anything but modeling objects.

    Keras serializes every object as {"module", "class_name", "config", "registered_name"};
    builtins have one of the modules allowed above and no "package>Name" registered name,
    which is exactly what custom_objects / register_keras_serializable add.
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
        if node.get("module") is None:
            if "config" in node and isinstance(class_name, str) \
                    and class_name not in VALUE_MARKERS:
                raise UnsafeModelError(
                    f"model contains {class_name!r} without a module (at {where}); gridd "
                    "refuses objects Keras would resolve by its legacy deserializer")
            continue
        if not isinstance(node["module"], str):
            raise UnsafeModelError(f"model names a module that is not a string (at {where})")
        reason = _module_refusal(node, where)
        if reason is not None:
            raise UnsafeModelError(reason)
        if registered not in (None, class_name):
            raise UnsafeModelError(
                f"model gives {class_name!r} the registered name {registered!r} (at {where}); "
                "Keras' own objects have none")


def _open_archive(data: bytes | Path) -> zipfile.ZipFile:
    source: Any = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise UnsafeModelError(f"not a .keras file (bad zip): {e}") from None
    names = [info.filename for info in zf.infolist()]
    if CONFIG not in names:
        zf.close()
        raise UnsafeModelError("not a .keras file: config.json is missing")
    extra = [n for n in names if n not in (CONFIG, METADATA, WEIGHTS)]
    if extra or len(names) != len(set(names)):
        zf.close()
        raise UnsafeModelError(
            f"a .keras file holds {CONFIG}, {METADATA} and {WEIGHTS} once each; this one "
            f"holds {len(names)} entries: {names[:8]}"
        )
    return zf


def _read_config(zf: zipfile.ZipFile) -> dict[str, Any]:
    info = zf.getinfo(CONFIG)
    if info.file_size > MAX_CONFIG_BYTES:
        raise UnsafeModelError(
            f"config.json is {info.file_size} bytes, over the {MAX_CONFIG_BYTES} limit"
        )
    if METADATA in zf.namelist() and zf.getinfo(METADATA).file_size > MAX_METADATA_BYTES:
        raise UnsafeModelError(f"metadata.json is over the {MAX_METADATA_BYTES} byte limit")
    try:
        with zf.open(info) as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
        raise UnsafeModelError(f"not a .keras file (bad zip): {e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UnsafeModelError(f"config.json is over the {MAX_CONFIG_BYTES} byte limit")
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UnsafeModelError(f"not a .keras file: config.json is not JSON ({e})") from None
    if not isinstance(config, dict):
        raise UnsafeModelError("not a .keras file: config.json is not an object")
    return config


def check_keras_archive(
    data: bytes | Path, *, max_params: int | None = DEFAULT_MAX_PARAMS
) -> Budget:
    """Everything load_keras_file refuses before Keras reads the file, without importing TF.

    The config is checked for unsafe objects, then sized (keras_budget); a model over
    `max_params` raises ModelTooLargeError, and the weights entry may not declare (as zip
    entry or as HDF5 datasets) more bytes than the budget accounts for.
    """
    with _open_archive(data) as zf:
        config = _read_config(zf)
        try:
            check_keras_config(config)
            budget = estimate(config)
        except UnsizableModelError as e:
            raise UnsafeModelError(f"gridd cannot size this model before building it: {e}") \
                from None
        except RecursionError:
            raise UnsafeModelError("config.json is nested too deeply") from None
        if max_params is not None and budget.params > max_params:
            raise ModelTooLargeError(budget.params, max_params)
        if WEIGHTS in zf.namelist():
            try:
                check_weights_entry(zf, WEIGHTS, budget)
            except UnsizableModelError as e:
                raise UnsafeModelError(str(e)) from None
    return budget


def load_keras_file(
    path_or_bytes: str | os.PathLike[str] | bytes,
    *,
    compile: bool = True,
    max_params: int | None = DEFAULT_MAX_PARAMS,
) -> keras.Model:
    """Load a .keras model from a path or bytes after refusing unsafe or oversized content.

    Raises UnsafeModelError for Lambda layers, custom objects, objects outside the modeling
    modules, layers gridd cannot size, or a file that is not a .keras archive, and
    ModelTooLargeError (a subclass) above `max_params` parameters (None: no limit; the
    model is still sized). `compile=False` skips the saved optimizer/loss.
    """
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes)
    budget = check_keras_archive(data, max_params=max_params)
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
    if model.count_params() > budget.params:  # the sizing missed something: say so loudly
        raise UnsafeModelError(
            f"the model built {model.count_params()} parameters but its config declares "
            f"{budget.params}; gridd refuses models it cannot size"
        )
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


# -- a recipe from a compiled model ---------------------------------------------------------

#: Keras optimizer classes a Recipe can name, and what it names them.
RECIPE_OPTIMIZERS = {"SGD": "sgd", "Adam": "adam"}
#: Metric names (as compile() takes them) that mean the recipe's "accuracy" for class-index
#: labels; Keras maps "accuracy" itself to sparse categorical accuracy for them.
ACCURACY_NAMES = frozenset({"accuracy", "acc", "sparse_categorical_accuracy"})


class UnsupportedCompileError(ValueError):
    """A compiled model whose training settings a tangle Recipe cannot carry: refused rather
    than silently replaced, since every peer trains with what the recipe says."""


def recipe_from_model(model: keras.Model, *, batch_size: int | None = None,
                      local_epochs: int | None = None) -> Recipe:
    """The Recipe a compiled Keras model implies: architecture "keras", its input shape and
    classes, its optimizer (SGD or Adam with its learning rate), loss and metric.

    Peers rebuild the optimizer from the recipe alone (`SGD(lr)` / `Adam(lr)`), so anything
    else about it (momentum, betas, clipping, weight decay, a learning-rate schedule, another
    optimizer) is refused with UnsupportedCompileError, as is a loss other than
    sparse_categorical_crossentropy on probabilities and a metric other than accuracy (no
    metric at all means accuracy, which peers need to compare models). A compiled model
    carries no batch size or epoch count: they default to the Recipe's (16 and 1).
    """
    import keras

    if not getattr(model, "compiled", False):
        raise UnsupportedCompileError(
            "the model is not compiled, so gridd cannot tell how peers should train it: "
            "compile it first, e.g. model.compile(optimizer=keras.optimizers.Adam(1e-3), "
            "loss='sparse_categorical_crossentropy', metrics=['accuracy']), or pass "
            "recipe=Recipe('keras', ...)")
    in_shape, out_shape = model.input_shape, model.output_shape
    if (not isinstance(in_shape, tuple) or any(d is None for d in in_shape[1:])
            or not isinstance(out_shape, tuple) or len(out_shape) != 2):
        raise UnsupportedCompileError(
            f"a tangle model takes one input of fixed shape and outputs one vector of class "
            f"probabilities; this one takes {in_shape} and outputs {out_shape}")
    optimizer, learning_rate = _recipe_optimizer(keras, model.optimizer)
    _check_recipe_loss(keras, model.loss)  # before serializing: Keras warns on a lambda
    config = model.get_compile_config() or {}
    for key in ("loss_weights", "weighted_metrics"):
        if config.get(key):
            raise UnsupportedCompileError(
                f"the model is compiled with {key}={config[key]!r}; a tangle recipe cannot "
                "carry it")
    metric = _recipe_metric(config.get("metrics"))
    defaults = {f.name: f.default for f in fields(Recipe)}
    return Recipe(
        "keras", tuple(int(d) for d in in_shape[1:]), int(out_shape[-1]),
        optimizer=optimizer, learning_rate=learning_rate,
        batch_size=defaults["batch_size"] if batch_size is None else batch_size,
        local_epochs=defaults["local_epochs"] if local_epochs is None else local_epochs,
        loss="sparse_categorical_crossentropy", metric=metric,
    )


def _recipe_optimizer(keras: Any, opt: Any) -> tuple[str, float]:
    """(recipe name, learning rate) of an optimizer peers can rebuild from them alone."""
    cls = type(opt)
    name = RECIPE_OPTIMIZERS.get(cls.__name__)
    if name is None or cls is not getattr(keras.optimizers, cls.__name__):
        raise UnsupportedCompileError(
            f"the model is compiled with the optimizer {cls.__name__}; a tangle recipe carries "
            f"only {' or '.join(RECIPE_OPTIMIZERS)} (with a learning rate): compile with one "
            "of them, or pass recipe=Recipe(...)")
    config = opt.get_config()
    lr = config.get("learning_rate")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        schedule = lr.get("class_name") if isinstance(lr, dict) else type(lr).__name__
        raise UnsupportedCompileError(
            f"the model's {cls.__name__} has a learning-rate schedule ({schedule}); a tangle "
            "recipe carries one constant learning rate")
    lr = float(str(np.float32(lr)))  # Keras keeps it as float32: 0.003, not 0.0030000000261
    plain = cls(learning_rate=lr).get_config()
    changed = sorted(k for k, v in config.items()
                     if k not in ("name", "learning_rate") and plain.get(k, v) != v)
    changed += sorted(k for k in plain if k not in config)
    if changed:
        settings = ", ".join(f"{k}={config.get(k)!r}" for k in changed)
        raise UnsupportedCompileError(
            f"the model's {cls.__name__} sets {settings}; a tangle recipe carries only its "
            f"learning rate and peers would train with {cls.__name__}'s defaults: compile with "
            f"{cls.__name__}(learning_rate=...) alone, or pass recipe=Recipe(...)")
    return name, lr


def _check_recipe_loss(keras: Any, loss: Any) -> None:
    """Accept sparse categorical cross-entropy on probabilities, in any form compile takes."""
    resolved = loss
    if isinstance(loss, str):
        try:
            resolved = keras.losses.get(loss)
        except ValueError:
            resolved = None
    if resolved is keras.losses.sparse_categorical_crossentropy:
        return
    cls = keras.losses.SparseCategoricalCrossentropy
    if type(resolved) is cls:
        plain = cls().get_config()
        config = resolved.get_config()
        changed = sorted(k for k in config if k != "name" and plain.get(k) != config[k])
        if not changed:
            return
        settings = ", ".join(f"{k}={config[k]!r}" for k in changed)
        raise UnsupportedCompileError(
            f"the model's loss sets {settings}; a tangle recipe carries "
            "sparse_categorical_crossentropy with its defaults (class-index labels, "
            "probabilities out: end the model with a softmax)")
    described = loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)
    raise UnsupportedCompileError(
        f"the model is compiled with the loss {described!r}; a tangle recipe carries only "
        "'sparse_categorical_crossentropy' (custom losses cannot travel to other peers)")


def _recipe_metric(metrics: Any) -> str:
    """'accuracy' for no metric or accuracy in any form compile takes; refuse the rest."""
    if not metrics:
        return "accuracy"
    if not isinstance(metrics, (list, tuple)):
        raise UnsupportedCompileError(
            f"the model is compiled with metrics {metrics!r}; a tangle recipe carries one "
            "metric, 'accuracy'")
    for entry in metrics:
        name: Any = entry
        if isinstance(entry, dict):
            if entry.get("class_name") == "function" and entry.get("module") in (
                    "builtins", "keras.metrics"):
                name = entry.get("config")
            elif (entry.get("module") == "keras.metrics"
                  and entry.get("class_name") == "SparseCategoricalAccuracy"):
                continue
            else:
                name = entry.get("class_name")
        if name not in ACCURACY_NAMES:
            raise UnsupportedCompileError(
                f"the model is compiled with the metric {name!r}; a tangle recipe carries one "
                "metric, 'accuracy' (compile with metrics=['accuracy'] or none)")
    return "accuracy"


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

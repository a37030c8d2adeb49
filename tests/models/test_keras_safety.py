"""Unsafe .keras content is refused from config.json alone, before Keras deserializes it.

Only Keras' modeling objects may be named; the allowlist was read off files the pinned Keras
saves, and the real-Keras tests below check it is neither too narrow nor too broad.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from gridd.models import UnsafeModelError, check_keras_config, load_keras_file, save_keras_bytes


def _dense(name: str) -> dict:
    return {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {
            "name": name,
            "units": 4,
            "dtype": {
                "module": "keras",
                "class_name": "DTypePolicy",
                "config": {"name": "float32"},
            },
        },
        "registered_name": None,
    }


def _model(*layers: dict) -> dict:
    return {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {"name": "m", "layers": list(layers)},
        "registered_name": "Functional",
        "compile_config": {"loss": "sparse_categorical_crossentropy"},
    }


def _zip(config: object, name: str = "config.json") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, config if isinstance(config, str) else json.dumps(config))
        zf.writestr("metadata.json", "{}")
    return buf.getvalue()


def test_plain_keras_config_passes() -> None:
    check_keras_config(_model(_dense("a"), _dense("b")))


def test_lambda_layer_is_refused_with_its_name() -> None:
    lam = {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "sneaky"}}
    with pytest.raises(
        UnsafeModelError, match="model contains a Lambda layer 'sneaky'; gridd refuses"
    ):
        check_keras_config(_model(_dense("a"), lam))


def test_nested_lambda_is_found() -> None:
    inner = _model(
        {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "deep"}},
    )
    with pytest.raises(UnsafeModelError, match="'deep'"):
        check_keras_config(_model(_dense("a"), {"k": [inner]}))


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (
            {"module": "evil_pkg.layers", "class_name": "Boom", "config": {}},
            "from module 'evil_pkg.layers'",
        ),
        (
            {"module": "builtins", "class_name": "eval", "config": {}},
            "from module 'builtins'",
        ),
        (
            {"module": "builtins", "class_name": "function", "config": "deserialize"},
            "deserialization helper",
        ),
        ({"module": "kerasx", "class_name": "Dense", "config": {}}, "from module 'kerasx'"),
        (
            {"class_name": "MyLayer", "registered_name": "evil>MyLayer", "config": {}},
            "'evil>MyLayer'",
        ),
        (
            {"class_name": "__lambda__", "config": {"code": "4wEAAA=="}},
            "serialized Python function",
        ),
    ],
)
def test_custom_objects_are_refused(node: dict, message: str) -> None:
    with pytest.raises(UnsafeModelError, match=message):
        check_keras_config(_model(_dense("a"), node))


@pytest.mark.parametrize(
    ("module", "class_name", "message"),
    [
        # The families published safe_mode bypasses go through: refused by module.
        ("keras.utils", "get_file", "'get_file' from module 'keras.utils'"),
        ("keras.models", "load_model", "'load_model' from module 'keras.models'"),
        ("keras.saving", "deserialize_keras_object", "from module 'keras.saving'"),
        ("keras.ops", "Add", "'Add' from module 'keras.ops'"),
        ("keras.src.ops.numpy", "Add", "from module 'keras.src.ops.numpy'"),
        ("keras.config", "enable_unsafe_deserialization", "from module 'keras.config'"),
        ("keras.backend", "clear_session", "from module 'keras.backend'"),
        ("keras.src.saving.serialization_lib", "deserialize_keras_object", "keras.src.saving"),
        # The top-level objects a model file needs, and nothing else from there.
        ("keras", "Input", "from 'keras' gridd only loads ['DTypePolicy', 'Sequential']"),
        ("keras", "Variable", "'Variable' from module 'keras'"),
        ("keras.src.models.functional", "Model", "only loads ['Functional']"),
        ("keras.src.models.model", "Model", "from module 'keras.src.models.model'"),
        # Layers: the kinds gridd can size, no helpers, no SavedModel loader.
        ("keras.layers", "TFSMLayer", "the layer 'TFSMLayer' (at config.config.layers[1])"),
        ("keras.layers", "deserialize", "the layer 'deserialize'"),
        ("keras.losses", "get", "keras.losses.get (at config.config.layers[1]), a "
         "deserialization helper"),
        ("keras.optimizers", "deserialize", "deserialization helper"),
    ],
)
def test_non_modeling_keras_objects_are_refused_by_module(
    module: str, class_name: str, message: str
) -> None:
    node = {"module": module, "class_name": class_name, "config": {}, "registered_name": None}
    with pytest.raises(UnsafeModelError, match=re.escape(message)):
        check_keras_config(_model(_dense("a"), node))


def test_functions_by_name_only_from_modeling_modules() -> None:
    ok = {"module": "builtins", "class_name": "function", "config": "mean_squared_error",
          "registered_name": "function"}
    check_keras_config(_model(_dense("a"), ok))
    check_keras_config(_model(_dense("a"), {**ok, "module": "keras.losses"}))
    with pytest.raises(UnsafeModelError, match="the function 'get_file' from module "
                       "'keras.utils'"):
        check_keras_config(_model(_dense("a"), {**ok, "module": "keras.utils",
                                                "config": "get_file"}))


def test_objects_without_a_module_or_with_a_foreign_registered_name_are_refused() -> None:
    legacy = {"class_name": "Dense", "config": {"units": 4}}  # Keras' legacy deserializer
    with pytest.raises(UnsafeModelError, match="'Dense' without a module"):
        check_keras_config(_model(_dense("a"), legacy))
    with pytest.raises(UnsafeModelError, match="'Dense' without a module"):
        check_keras_config(_model(_dense("a"), {**legacy, "module": None}))
    renamed = {**_dense("b"), "registered_name": "Other"}
    with pytest.raises(UnsafeModelError, match="registered name 'Other'"):
        check_keras_config(_model(_dense("a"), renamed))
    tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 4]}}
    check_keras_config(_model(_dense("a"), {"args": [tensor]}))


def _real_functional(keras: ModuleType) -> bytes:
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4, name="out")(inputs))
    model.compile(optimizer="adam", loss="mse")
    return save_keras_bytes(model)


def _insert_layer(data: bytes, entry: dict) -> bytes:
    """A real .keras file with `entry` spliced into its Functional graph before the output."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        config = json.loads(zf.read("config.json"))
        weights = zf.read("model.weights.h5")
    layers = config["config"]["layers"]
    source = layers[1]["inbound_nodes"][0]["args"][0]
    entry["inbound_nodes"] = [{"args": [source], "kwargs": {}}]
    layers[1]["inbound_nodes"][0]["args"][0] = {
        "class_name": "__keras_tensor__",
        "config": {"shape": [None, 8], "dtype": "float32",
                   "keras_history": [entry["name"], 0, 0]},
    }
    layers.insert(1, entry)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("metadata.json", "{}")
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", weights)
    return buf.getvalue()


@pytest.mark.tf
@pytest.mark.parametrize(
    ("module", "class_name", "config"),
    [
        ("keras.utils", "get_file", {"fname": "x", "origin": "http://127.0.0.1:9/x"}),
        ("keras.models", "load_model", {"filepath": "/tmp/other.keras"}),
        ("keras.saving", "load_model", {"filepath": "/tmp/other.keras"}),
        ("keras.layers", "TFSMLayer", {"filepath": "/tmp/saved_model"}),
    ],
)
def test_real_file_with_a_bypass_layer_is_refused(
    module: str, class_name: str, config: dict
) -> None:
    keras = pytest.importorskip("keras")
    data = _real_functional(keras)
    load_keras_file(data)  # the unedited file loads
    entry = {"module": module, "class_name": class_name, "config": config,
             "registered_name": None, "name": "evil"}
    with pytest.raises(UnsafeModelError, match=re.escape(f"'{class_name}'")) as e:
        load_keras_file(_insert_layer(data, entry))
    assert module in str(e.value) or "does not load" in str(e.value)


@pytest.mark.tf
def test_real_models_compiled_with_common_objects_load() -> None:
    # What a data scientist sends: objects rather than strings, schedules, regularizers,
    # function losses (saved as module 'builtins'), Sequential and Functional.
    keras = pytest.importorskip("keras")
    k = keras
    dense = k.layers.Dense(8, activation=k.activations.gelu,
                           kernel_initializer=k.initializers.HeNormal(),
                           kernel_regularizer=k.regularizers.L2(1e-3),
                           kernel_constraint=k.constraints.MaxNorm(2.0))
    seq = k.Sequential([k.Input((6,)), dense, k.layers.Dense(3, activation="softmax")])
    seq.compile(optimizer=k.optimizers.SGD(0.1, momentum=0.9),
                loss=k.losses.SparseCategoricalCrossentropy(),
                metrics=[k.metrics.SparseCategoricalAccuracy(), "accuracy"])
    inputs = k.Input((6,))
    func = k.Model(inputs, k.layers.Dense(1)(k.layers.Dense(4, activation="relu")(inputs)))
    schedule = k.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.9)
    func.compile(optimizer=k.optimizers.Adam(schedule), loss=k.losses.mean_squared_error,
                 metrics=[k.metrics.mean_absolute_error, k.metrics.RootMeanSquaredError()])
    for model in (seq, func):
        loaded = load_keras_file(save_keras_bytes(model))
        assert loaded.count_params() == model.count_params()
        assert loaded.optimizer is not None


def test_archive_entries_are_exactly_those_keras_writes() -> None:
    cfg = json.dumps(_model(_dense("a")))
    for entries, message in [
        ({"config.json": cfg, "assets/x.txt": "x"}, "holds 2 entries"),
        ({"config.json": cfg, "model.weights.npz": "x"}, "model.weights.npz"),
    ]:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, body in entries.items():
                zf.writestr(name, body)
        with pytest.raises(UnsafeModelError, match=re.escape(message)):
            load_keras_file(buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("config.json", cfg)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("config.json", cfg)
    with pytest.raises(UnsafeModelError, match="once each"):
        load_keras_file(buf.getvalue())


def test_custom_loss_in_compile_config_is_refused() -> None:
    cfg = _model(_dense("a"))
    cfg["compile_config"]["loss"] = {"module": "__main__", "class_name": "function", "config": "f"}
    with pytest.raises(UnsafeModelError, match="'__main__'"):
        check_keras_config(cfg)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"definitely not a zip", "bad zip"),
        (_zip({}, name="other.json"), "config.json is missing"),
        (_zip("{not json"), "not JSON"),
        (_zip([1, 2]), "not an object"),
        (
            _zip(
                _model({"module": "keras.layers", "class_name": "Lambda", "config": {"name": "x"}})
            ),
            "Lambda",
        ),
    ],
)
def test_load_keras_file_refuses_bad_archives(data: bytes, message: str) -> None:
    with pytest.raises(UnsafeModelError, match=message):
        load_keras_file(data)


def test_load_keras_file_reads_paths(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    path.write_bytes(
        _zip(_model({"module": "keras.layers", "class_name": "Lambda", "config": {"name": "p"}}))
    )
    with pytest.raises(UnsafeModelError, match="'p'"):
        load_keras_file(path)
    with pytest.raises(UnsafeModelError, match="'p'"):
        load_keras_file(str(path))


def test_refusal_needs_no_tensorflow_and_imports_stay_tf_free() -> None:
    # A fresh interpreter proves both: the package imports without TF, and a Lambda model
    # is refused from its config.json before Keras is ever imported.
    code = (
        "import sys\n"
        "import gridd.data, gridd.models\n"
        "from gridd.models import UnsafeModelError, load_keras_file\n"
        "try:\n"
        "    load_keras_file(sys.stdin.buffer.read())\n"
        "except UnsafeModelError as e:\n"
        "    print(e)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n"
    )
    lam = {"module": "keras.layers", "class_name": "Lambda", "config": {"name": "lam"}}
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=_zip(_model(lam)),
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert "Lambda layer 'lam'" in out.stdout.decode()

"""A .keras model is sized from its config.json before Keras builds it; bombs are refused.

Models here are built and saved by the pinned Keras; the estimate must equal what Keras then
builds (model.count_params()), exactly, and crafted files must be refused before any build.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gridd.models import UnsafeModelError, load_keras_file, save_keras_bytes
from gridd.models.keras_budget import (
    FILE_SLACK,
    UnsizableModelError,
    estimate,
    optimizer_slots,
)
from gridd.models.keras_model import ModelTooLargeError, check_keras_archive

pytestmark = pytest.mark.tf

ROOT = Path(__file__).resolve().parents[2]
BOMB_PARAMS = 16384 * 8192 + 8192  # the Dense kernel and bias the bomb declares


@pytest.fixture(scope="module")
def keras() -> ModuleType:
    return pytest.importorskip("keras")


def config_of(data: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("config.json"))


def with_config(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The same .keras archive with config.json edited (how an attacker crafts a file)."""
    config = config_of(data)
    edit(config)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = json.dumps(config) if info.filename == "config.json" else src.read(info)
            dst.writestr(info, body)
    return out.getvalue()


def small_dense(keras: ModuleType) -> bytes:
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile(optimizer="adam", loss="mse")
    return save_keras_bytes(model)


def dense_bomb(keras: ModuleType) -> bytes:
    """A ~10 KB file whose config declares a 16384 -> 8192 Dense (134 M parameters)."""

    def edit(config: dict[str, Any]) -> None:
        config["build_config"]["input_shape"] = [None, 16384]
        inp, dense = config["config"]["layers"]
        inp["config"]["batch_shape"] = [None, 16384]
        dense["config"]["units"] = 8192
        dense["build_config"]["input_shape"] = [None, 16384]

    return with_config(small_dense(keras), edit)


# -- ordinary models: the estimate is exact ------------------------------------------------


def _mlp(k: ModuleType) -> Any:
    return k.Sequential([k.Input((64,)), k.layers.Dense(32, activation="relu"),
                         k.layers.BatchNormalization(), k.layers.Dropout(0.2),
                         k.layers.Dense(10, activation="softmax")])


def _cnn(k: ModuleType) -> Any:
    x = inputs = k.Input((28, 28, 1))
    x = k.layers.Conv2D(8, 3, activation="relu")(x)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.MaxPooling2D()(x)
    x = k.layers.Conv2D(16, (5, 3), strides=2, padding="same", use_bias=False)(x)
    x = k.layers.Dropout(0.25)(x)
    x = k.layers.Flatten()(x)
    return k.Model(inputs, k.layers.Dense(10)(x))


def _text(k: ModuleType) -> Any:
    x = inputs = k.Input((20,), dtype="int32")
    x = k.layers.Embedding(1000, 16)(x)
    x = k.layers.Conv1D(8, 5, dilation_rate=2, padding="causal")(x)
    x = k.layers.GlobalAveragePooling1D()(x)
    return k.Model(inputs, k.layers.Dense(1, activation="sigmoid")(x))


def _recurrent(k: ModuleType) -> Any:
    x = inputs = k.Input((12, 6))
    x = k.layers.Bidirectional(k.layers.LSTM(5, return_sequences=True))(x)
    x = k.layers.GRU(4, reset_after=False, return_sequences=True)(x)
    x = k.layers.SimpleRNN(3)(x)
    return k.Model(inputs, k.layers.Dense(2)(x))


def _shapes(k: ModuleType) -> Any:
    x = inputs = k.Input((4, 6, 3))
    x = k.layers.Conv2D(4, 3, padding="same", data_format="channels_first")(x)
    x = k.layers.LayerNormalization(axis=[2, 3])(x)
    x = k.layers.PReLU(shared_axes=[1])(x)
    x = k.layers.Permute((2, 1, 3))(x)
    x = k.layers.Reshape((6, -1))(x)
    x = k.layers.AveragePooling1D(2, padding="same")(x)
    x = k.layers.Flatten()(x)
    x = k.layers.RepeatVector(3)(x)
    return k.Model(inputs, k.layers.Dense(2, dtype="float64")(x))


def _graph(k: ModuleType) -> Any:
    a, b = k.Input((5,), name="a"), k.Input((7,), name="b")
    shared = k.layers.Dense(6, name="shared")
    inner = k.Sequential([k.Input((6,)), k.layers.Dense(3)], name="inner")
    ha = inner(shared(k.layers.Dense(7)(a)))
    hb = inner(shared(b))
    merged = k.layers.Concatenate()([k.layers.Add()([ha, hb]), ha])
    conv = k.layers.Reshape((2, 3, 1))(merged)
    conv = k.layers.Conv3D(2, (1, 2, 1), groups=1)(k.layers.Reshape((2, 3, 1, 1))(conv))
    out = k.layers.Dense(1)(k.layers.Flatten()(conv))
    return k.Model([a, b], out)


def _grouped(k: ModuleType) -> Any:
    return k.Sequential([k.Input((16, 16, 4)), k.layers.Conv2D(8, 3, groups=2),
                         k.layers.GlobalMaxPooling2D(keepdims=True), k.layers.Flatten(),
                         k.layers.Dense(3)])


MODELS = {f.__name__[1:]: f for f in (_mlp, _cnn, _text, _recurrent, _shapes, _graph, _grouped)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_estimate_equals_what_keras_builds(keras: ModuleType, name: str) -> None:
    model = MODELS[name](keras)
    model.compile(optimizer="adam", loss="mse")
    data = save_keras_bytes(model)
    budget = estimate(config_of(data))
    assert budget.params == model.count_params()
    loaded = load_keras_file(data)
    assert loaded.count_params() == budget.params


def test_budget_bytes_cover_weights_gradients_and_optimizer_state(keras: ModuleType) -> None:
    model = _mlp(keras)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    budget = estimate(config_of(save_keras_bytes(model)))
    assert budget.bytes == model.count_params() * 4 * (2 + 1)  # float32, grads, momentum
    assert optimizer_slots({"optimizer": "adam"}) == 2
    assert optimizer_slots({"optimizer": {"class_name": "Muon", "config": {}}}) == 3
    assert optimizer_slots(None) == 0


def test_unbuilt_sequential_is_refused_not_guessed(keras: ModuleType) -> None:
    # Without an input shape, fit() would size the layers from the data: no bound at all.
    model = keras.Sequential([keras.layers.Dense(4)])
    with pytest.raises(UnsafeModelError, match="declares no input shape"):
        load_keras_file(save_keras_bytes(model))


def test_layer_kinds_it_cannot_size_are_refused(keras: ModuleType) -> None:
    inputs = keras.Input((4, 8))
    out = keras.layers.MultiHeadAttention(2, 4)(inputs, inputs)
    with pytest.raises(UnsafeModelError, match="'MultiHeadAttention'"):
        load_keras_file(save_keras_bytes(keras.Model(inputs, out)))
    with pytest.raises(UnsizableModelError, match="'EinsumDense'"):
        estimate({"class_name": "Sequential", "config": {"layers": [
            {"module": "keras.layers", "class_name": "InputLayer",
             "config": {"batch_shape": [None, 3]}},
            {"module": "keras.layers", "class_name": "EinsumDense", "config": {}},
        ]}})


# -- bombs -------------------------------------------------------------------------------


def test_parameter_bomb_is_refused_with_its_count_and_the_limit(keras: ModuleType) -> None:
    bomb = dense_bomb(keras)
    assert len(bomb) < 32 * 1024
    with pytest.raises(ModelTooLargeError, match=f"{BOMB_PARAMS} parameters, over the limit "
                       "of 50000000 parameters") as e:
        load_keras_file(bomb)
    assert (e.value.params, e.value.limit) == (BOMB_PARAMS, 50_000_000)
    with pytest.raises(ModelTooLargeError, match="36 parameters, over the limit of 10 "):
        load_keras_file(small_dense(keras), max_params=10)
    assert check_keras_archive(small_dense(keras), max_params=36).params == 36
    with pytest.raises(ModelTooLargeError):
        check_keras_archive(small_dense(keras), max_params=35)


def test_parameter_bomb_refusal_costs_no_memory() -> None:
    # A fresh interpreter with Keras already imported (as on a worker): the refusal must not
    # grow RSS (current) nor the peak. Building the bomb would allocate 512 MiB at least.
    code = """
import resource, sys, psutil, keras
sys.path.insert(0, "tests/models")
from test_keras_budget import dense_bomb
from gridd.models.keras_model import ModelTooLargeError, load_keras_file
bomb = dense_bomb(keras)
proc = psutil.Process()
rss, peak = proc.memory_info().rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_keras_file(bomb)
    print("LOADED")
except ModelTooLargeError as e:
    print("REFUSED", e.params)
grow = proc.memory_info().rss - rss
peak_grow = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak  # KiB on Linux
print("RSS", grow, peak_grow * 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=240, check=True, cwd=ROOT).stdout.split()
    assert out[:2] == ["REFUSED", str(BOMB_PARAMS)]
    grow, peak_grow = int(out[3]), int(out[4])
    assert grow < 50 * 2**20 and peak_grow < 50 * 2**20, (grow, peak_grow)


def test_build_config_bomb_behind_a_small_input_is_counted(keras: ModuleType) -> None:
    # Keras builds a layer from its own build_config before wiring the graph: a Dense that
    # says it was built on 16384 inputs allocates that kernel even if the Input has 8.
    def edit(config: dict[str, Any]) -> None:
        dense = config["config"]["layers"][1]
        dense["config"]["units"] = 8192
        dense["build_config"]["input_shape"] = [None, 16384]

    with pytest.raises(ModelTooLargeError, match=f"{16384 * 8192 + 8192} parameters"):
        load_keras_file(with_config(small_dense(keras), edit))


def test_embedding_bomb_is_refused(keras: ModuleType) -> None:
    model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(10, 4)])

    def edit(config: dict[str, Any]) -> None:
        config["config"]["layers"][1]["config"]["input_dim"] = 10**9

    with pytest.raises(ModelTooLargeError, match=f"{4 * 10**9} parameters"):
        load_keras_file(with_config(save_keras_bytes(model), edit))


def _replace_weights(data: bytes, body: bytes, compression: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", compression) as dst:
        for info in src.infolist():
            if info.filename != "model.weights.h5":
                dst.writestr(info.filename, src.read(info))
        dst.writestr("model.weights.h5", body)
    return out.getvalue()


def test_weights_entry_larger_than_the_model_needs_is_refused(keras: ModuleType) -> None:
    data = small_dense(keras)
    bomb = _replace_weights(data, bytes(FILE_SLACK + 10**6), zipfile.ZIP_DEFLATED)
    assert len(bomb) < 64 * 1024  # 17 MB of zeros deflate to ~17 KB
    with pytest.raises(UnsafeModelError, match="model.weights.h5 declares 17777216 bytes"):
        load_keras_file(bomb)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        weights = zf.read("model.weights.h5")
    with pytest.raises(UnsafeModelError, match="compressed; Keras stores it uncompressed"):
        load_keras_file(_replace_weights(data, weights, zipfile.ZIP_DEFLATED))
    load_keras_file(_replace_weights(data, weights))  # the same entry, stored: loads


def test_hdf5_dataset_declaring_more_than_the_model_needs_is_refused(
    keras: ModuleType, tmp_path: Path
) -> None:
    import h5py

    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as h5:  # 1 GiB declared, nothing stored: expands on read
        h5.create_dataset("layers/dense/vars/0", shape=(2**28,), dtype="float32",
                          chunks=(2**16,), compression="gzip")
    body = path.read_bytes()
    assert len(body) < 64 * 1024
    with pytest.raises(UnsafeModelError, match="declares datasets of more than"):
        load_keras_file(_replace_weights(small_dense(keras), body))
    with pytest.raises(UnsafeModelError, match="not a readable HDF5 file"):
        load_keras_file(_replace_weights(small_dense(keras), b"not hdf5"))

"""Unsafe .keras content is refused from config.json alone, before Keras deserializes it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gridd.models import UnsafeModelError, check_keras_config, load_keras_file


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
            {"module": "builtins", "class_name": "function", "config": "eval"},
            "from module 'builtins'",
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

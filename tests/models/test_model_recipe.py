"""Recipe validation names the bad field; to_dict/from_dict round-trips through msgpack."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridd.models import Recipe


def test_defaults_match_the_benchmark_setup() -> None:
    r = Recipe("digits_mlp", (64,), 10)
    assert (r.optimizer, r.learning_rate, r.batch_size, r.local_epochs) == ("sgd", 0.1, 16, 1)
    assert r.hidden_layers() == (32,)


def test_lists_become_tuples_and_int_learning_rate_becomes_float() -> None:
    r = Recipe("mlp", [8, 8], 3, hidden=[16, 4], learning_rate=1)  # type: ignore[arg-type]
    assert r.input_shape == (8, 8) and r.hidden == (16, 4)
    assert isinstance(r.learning_rate, float)
    hash(r)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("architecture", {"architecture": "resnet"}),
        ("input_shape", {"input_shape": ()}),
        ("input_shape", {"input_shape": (0,)}),
        ("input_shape", {"input_shape": (64.0,)}),
        ("input_shape", {"architecture": "digits_mlp", "input_shape": (32,)}),
        ("classes", {"classes": 1}),
        ("classes", {"classes": True}),
        ("classes", {"architecture": "digits_mlp", "input_shape": (64,), "classes": 9}),
        ("optimizer", {"optimizer": "rmsprop"}),
        ("learning_rate", {"learning_rate": 0.0}),
        ("learning_rate", {"learning_rate": float("nan")}),
        ("learning_rate", {"learning_rate": float("inf")}),
        ("learning_rate", {"learning_rate": "0.1"}),
        ("batch_size", {"batch_size": 0}),
        ("batch_size", {"batch_size": 16.0}),
        ("local_epochs", {"local_epochs": 0}),
        ("local_epochs", {"local_epochs": 10**6}),
        ("loss", {"loss": "mse"}),
        ("metric", {"metric": "auc"}),
        ("hidden", {"hidden": (32,)}),  # softmax has no hidden layers
        ("hidden", {"architecture": "mlp", "hidden": ()}),
        ("hidden", {"architecture": "mlp", "hidden": (10**6,)}),
    ],
)
def test_invalid_field_is_named(field: str, kwargs: dict) -> None:
    base = {"architecture": "softmax", "input_shape": (5,), "classes": 3}
    with pytest.raises(ValueError, match=rf"^recipe\.{field}:"):
        Recipe(**{**base, **kwargs})


def test_validate_catches_a_recipe_mutated_after_construction() -> None:
    r = Recipe("softmax", (5,), 3)
    object.__setattr__(r, "batch_size", -1)
    with pytest.raises(ValueError, match=r"recipe\.batch_size"):
        r.validate()


def test_round_trip_through_msgpack() -> None:
    r = Recipe("mlp", (8, 8), 10, optimizer="adam", learning_rate=0.01, hidden=(16,))
    d = msgpack.unpackb(msgpack.packb(r.to_dict()), raw=False)
    assert Recipe.from_dict(d) == r


@given(
    arch=st.sampled_from(["softmax", "mlp", "keras"]),
    shape=st.lists(st.integers(1, 64), min_size=1, max_size=3),
    classes=st.integers(2, 1000),
    lr=st.floats(1e-6, 10.0),
    batch=st.integers(1, 4096),
    epochs=st.integers(1, 50),
    hidden=st.lists(st.integers(1, 512), min_size=1, max_size=4),
)
def test_round_trip_property(
    arch: str, shape: list[int], classes: int, lr: float, batch: int, epochs: int, hidden: list[int]
) -> None:
    r = Recipe(
        arch,
        tuple(shape),
        classes,
        learning_rate=lr,
        batch_size=batch,
        local_epochs=epochs,
        hidden=tuple(hidden) if arch == "mlp" else (),
    )
    assert Recipe.from_dict(msgpack.unpackb(msgpack.packb(r.to_dict()), raw=False)) == r


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        ({"classes": "10"}, r"recipe\.classes: expected int"),
        ({"classes": 10.0}, r"recipe\.classes: expected int"),
        ({"input_shape": "64"}, r"recipe\.input_shape: expected a list of ints"),
        ({"input_shape": [64.0]}, r"recipe\.input_shape: expected a list of ints"),
        ({"learning_rate": True}, r"recipe\.learning_rate: expected a number"),
        ({"optimizer": 1}, r"recipe\.optimizer: expected str"),
        ({"batch_size": None}, r"recipe\.batch_size: expected int"),
    ],
)
def test_from_dict_rejects_unknown_and_mistyped_fields(change: dict, message: str) -> None:
    d = {**Recipe("digits_mlp", (64,), 10).to_dict(), **change}
    with pytest.raises(ValueError, match=message):
        Recipe.from_dict(d)


def test_from_dict_requires_the_fields_without_defaults() -> None:
    d = Recipe("digits_mlp", (64,), 10).to_dict()
    del d["classes"]
    with pytest.raises(ValueError, match=r"missing field\(s\) \['classes'\]"):
        Recipe.from_dict(d)
    with pytest.raises(ValueError, match="expected a dict"):
        Recipe.from_dict([("architecture", "softmax")])


def test_from_dict_applies_validation() -> None:
    d = {**Recipe("digits_mlp", (64,), 10).to_dict(), "batch_size": 0}
    with pytest.raises(ValueError, match=r"recipe\.batch_size"):
        Recipe.from_dict(d)

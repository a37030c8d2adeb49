"""The genesis of a tangle: recipe, architecture and initial weights, named by one id.

The genesis is an ordinary parentless transaction whose metadata names the recipe blob
(`recipe`) and, for a model that is not builtin, the .keras file (`keras`); its weights CID
holds the initial weights. Its id therefore commits to everything a peer needs to join, and
the pubsub topic is derived from it (`topic_for`), so two tangles never mix. Like every
transaction, its record is stored under `record_cid(id)`, which is how `load_genesis`
finds it from the id alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridd import pins
from gridd.models import Recipe, build_model, load_keras_file, save_keras_bytes
from gridd.models.base import WeightSpec, check_weights, spec_of
from gridd.transport import Store
from gridd.tree.messages import (
    MAX_RECORD_BYTES,
    RECIPE,
    decode_record,
    encode_record,
    record_cid,
    topic_for,
)
from gridd.wire import decode, decode_weights, encode, encode_weights
from tangle import InvalidTransaction, Transaction

GENESIS_TAG = "genesis"
MAX_RECIPE_BYTES = 64 * 1024
MAX_KERAS_BYTES = 256 * 1024 * 1024
MAX_GENESIS_WEIGHTS_BYTES = 256 * 1024 * 1024

__all__ = ["Genesis", "GenesisError", "create_genesis", "load_genesis", "put_record", "topic_for"]


class GenesisError(ValueError):
    """A genesis id that does not name a usable tangle genesis."""


@dataclass(frozen=True)
class Genesis:
    """Everything a peer needs to join: recipe, initial weights, the .keras file if any."""

    transaction: Transaction
    recipe: Recipe
    weights: list[np.ndarray]
    keras_bytes: bytes | None
    weights_size: int
    """Bytes of the encoded initial weights: later weights of the same spec are about as big."""

    @property
    def id(self) -> str:
        return self.transaction.id

    @property
    def topic(self) -> str:
        return topic_for(self.transaction.id)

    @property
    def spec(self) -> WeightSpec:
        return spec_of(self.weights)


def put_record(store: Store, tx: Transaction) -> str:
    """Store (and pin) a transaction's record; the CID must be the one derived from its id."""
    cid = store.put(encode_record(tx), pin=True)
    expected = record_cid(tx.id)
    if cid != expected:
        raise RuntimeError(
            f"the store addressed a transaction record as {cid}, expected {expected}; gridd "
            "needs small blobs added as CIDv1 raw leaves with sha2-256 (Kubo's default for "
            "--cid-version=1). Check Import.* in the Kubo config."
        )
    return cid


def _recipe_from_keras(model: Any, recipe: Recipe | None) -> Recipe:
    """A recipe matching a Keras model's input/output (other fields from `recipe`)."""
    in_shape = tuple(int(d) for d in model.input_shape[1:])
    classes = int(model.output_shape[-1])
    base = recipe.to_dict() if recipe is not None else {}
    base.update(architecture="keras", input_shape=list(in_shape), classes=classes, hidden=[])
    return Recipe.from_dict(base)


def create_genesis(
    store: Store,
    recipe: Recipe,
    *,
    keras_model: Any = None,
    init_seed: int = 0,
    issuer: str = "",
    created_at: float | None = None,
) -> str:
    """Store recipe, architecture and initial weights; return the genesis transaction id.

    For a builtin architecture the initial weights are the seeded glorot start every adapter
    builds (`init_seed`). With `keras_model` (a Keras model, or .keras bytes/path) the
    architecture travels as a .keras file, the recipe's architecture becomes "keras" with
    the model's input shape and classes, and the model's current weights are the start.
    """
    keras_bytes: bytes | None = None
    if keras_model is not None:
        if isinstance(keras_model, (bytes, str)) or hasattr(keras_model, "__fspath__"):
            keras_model = load_keras_file(keras_model, compile=False)  # refuses unsafe files
        recipe = _recipe_from_keras(keras_model, recipe)
        keras_bytes = save_keras_bytes(keras_model)
        load_keras_file(keras_bytes, compile=False)  # what peers will do: fail here, not there
        weights = [np.asarray(w, dtype=np.float32) for w in keras_model.get_weights()]
    elif recipe.architecture == "keras":
        raise GenesisError("recipe.architecture 'keras' needs keras_model")
    else:
        weights = build_model(recipe, prefer="numpy", seed=int(init_seed)).get_weights()
    check_weights(spec_of(weights), weights)
    recipe_cid = store.put(encode(RECIPE, {"recipe": recipe.to_dict()}), pin=True)
    weights_cid = store.put(encode_weights(weights), pin=True)
    metadata: dict[str, Any] = {"recipe": recipe_cid, "init_seed": int(init_seed), "gridd": 1}
    if keras_bytes is not None:
        metadata["keras"] = store.put(keras_bytes, pin=True)
    tx = Transaction.genesis(
        weights_cid,
        issuer=issuer or "genesis",
        created_at=time.time() if created_at is None else created_at,
        tag=GENESIS_TAG,
        metadata=metadata,
    )
    put_record(store, tx)
    return tx.id


def load_genesis(store: Store, genesis_id: str, timeout: float = 60.0) -> Genesis:
    """Fetch and check a genesis by id; GenesisError (with the reason) if it is not one.

    Store errors (content unavailable, IPFS unreachable) propagate unchanged.
    """
    try:
        cid = record_cid(genesis_id)
    except ValueError as e:
        raise GenesisError(f"genesis id: {e}") from None
    data = store.get(cid, max_size=MAX_RECORD_BYTES, timeout=timeout)
    try:
        tx = decode_record(data, expect_id=genesis_id)
    except InvalidTransaction as e:
        raise GenesisError(f"genesis {genesis_id}: {e}") from None
    meta = tx.metadata
    if tx.parents or tx.tag != GENESIS_TAG or not isinstance(meta.get("recipe"), str):
        raise GenesisError(f"{genesis_id} is a transaction but not a tangle genesis")
    try:
        env = decode(
            store.get(str(meta["recipe"]), max_size=MAX_RECIPE_BYTES, timeout=timeout),
            max_size=MAX_RECIPE_BYTES,
            expect=[RECIPE],
        )
        recipe = Recipe.from_dict(env.body["recipe"])
    except ValueError as e:  # WireError and recipe errors are ValueErrors
        raise GenesisError(f"genesis {genesis_id}: bad recipe: {e}") from None
    raw = store.get(tx.weights_cid, max_size=MAX_GENESIS_WEIGHTS_BYTES, timeout=timeout)
    try:
        weights = decode_weights(raw, max_bytes=MAX_GENESIS_WEIGHTS_BYTES)
        check_weights(spec_of(weights), weights)
    except ValueError as e:
        raise GenesisError(f"genesis {genesis_id}: bad initial weights: {e}") from None
    keras_bytes = None
    if recipe.architecture == "keras":
        keras_cid = meta.get("keras")
        if not isinstance(keras_cid, str):
            raise GenesisError(f"genesis {genesis_id}: a keras recipe without a .keras file")
        keras_bytes = store.get(keras_cid, max_size=MAX_KERAS_BYTES, timeout=timeout)
    name = pins.tree(genesis_id, "genesis")
    for cid in (record_cid(genesis_id), str(meta["recipe"]), tx.weights_cid):
        store.pin(cid, name=name)
    if keras_bytes is not None:
        store.pin(str(meta["keras"]), name=name)
    return Genesis(tx, recipe, weights, keras_bytes, len(raw))

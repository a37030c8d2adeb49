"""Client-side checks that need no daemon: what is refused before anything is published."""

from __future__ import annotations

import numpy as np
import pytest

from gridd.compute.remote import RemoteHistory, Uploader, array_bytes, history_from_logs
from gridd.transport import MemoryNetwork


def test_object_arrays_are_refused_because_they_would_need_pickle() -> None:
    with pytest.raises(TypeError, match="numeric arrays only"):
        array_bytes(np.array([{"a": 1}], dtype=object), "x")
    raw = array_bytes(np.arange(6, dtype=np.float32).reshape(2, 3), "x")
    assert raw.startswith(b"\x93NUMPY")


def test_same_bytes_are_uploaded_once() -> None:
    store = MemoryNetwork().store()
    up = Uploader(store)
    a, _ = up.arrays(x=np.ones(4), y=np.zeros(4))
    b, _ = up.arrays(x=np.ones(4), y=np.zeros(4))
    assert a == b and len(store.net._blobs) == 2


def test_history_is_shaped_like_keras() -> None:
    h = RemoteHistory(history_from_logs([{"loss": 2.0}, {"loss": 1.0, "acc": 0.5}]), {},
                      "j", None, None)
    assert h.epoch == [0, 1]
    assert h.history["loss"] == [2.0, 1.0] and np.isnan(h.history["acc"][0])


@pytest.mark.tf
def test_an_uncompiled_model_is_refused_with_the_fix() -> None:
    import keras

    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"model.compile"):
        Uploader(MemoryNetwork().store()).model(model)

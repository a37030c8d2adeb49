"""Fixtures for the model tests; registers the `tf` marker (TensorFlow tests, slower)."""

from __future__ import annotations

import numpy as np
import pytest

from gridd.data import load_digits_split


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tf: needs TensorFlow (imports it; a few seconds)")


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The benchmark split: (x_train, y_train, x_test, y_test)."""
    return load_digits_split()

"""Sweep building blocks: space expansion, calling build_fn, successive halving (pure)."""

from __future__ import annotations

import pytest

from gridd.compute.sweep import Halving, call_build, choice, expand, loguniform, rungs


def test_lists_make_a_grid() -> None:
    configs = expand({"units": [8, 16], "lr": [0.1, 0.01, 0.001]})
    assert len(configs) == 6 and {"units": 16, "lr": 0.001} in configs


def test_samplers_make_seeded_random_trials() -> None:
    space = {"lr": loguniform(1e-4, 1e-1), "units": [8, 16], "act": choice(["relu", "tanh"])}
    a, b = expand(space, trials=5, seed=1), expand(space, trials=5, seed=1)
    assert a == b and len(a) == 5
    assert all(1e-4 <= c["lr"] <= 1e-1 and c["units"] in (8, 16) for c in a)
    with pytest.raises(ValueError, match="trials"):
        expand(space)
    with pytest.raises(ValueError, match="non-empty list"):
        expand({"units": []})


def test_build_fn_gets_kwargs_or_the_dict() -> None:
    assert call_build(lambda units, lr: (units, lr), {"units": 8, "lr": 0.1}) == (8, 0.1)
    assert call_build(lambda config: config["units"], {"units": 8, "lr": 0.1}) == 8
    # fit keys (epochs, batch_size) are not forced on a build_fn that does not name them
    assert call_build(lambda units: units, {"units": 4, "batch_size": 32}) == 4


def test_halving_stops_the_bottom_of_each_rung() -> None:
    assert rungs(27, 1, 3) == [1, 3, 9]
    h = Halving(epochs=9, min_epochs=1, eta=3, mode="max")
    assert h.should_stop(0, [0.9]) is None
    assert h.should_stop(1, [0.5]) is None  # fewer than eta seen: keep going
    assert h.should_stop(2, [0.1]) == 1  # third at rung 1 and the worst: stop
    assert h.should_stop(3, [0.95]) is None
    h = Halving(epochs=9, min_epochs=1, eta=3, mode="min")
    for i, loss in enumerate([0.1, 0.2]):
        assert h.should_stop(i, [loss]) is None
    assert h.should_stop(2, [0.3]) == 1

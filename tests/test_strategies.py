"""The aggregation seam (gridd.strategies): each built-in against small hand-computed cases,
their refusals, state and config round-trips, a notebook-style custom strategy, and tree
mode's averaging going through FedAvg with its sample clipping."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import pytest

from gridd.data import Dataset, load_digits_split
from gridd.metrics import TreeMetrics
from gridd.models import Recipe, average_weights
from gridd.strategies import (
    BUILTINS,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedYogi,
    Krum,
    Strategy,
    StrategyError,
    TrimmedMean,
    Update,
    Weights,
    resolve,
    strategy_from_config,
)
from gridd.transport import MemoryNetwork
from gridd.tree.genesis import create_genesis
from gridd.tree.peer import TreePeer
from gridd.tree.settings import TreeSettings
from gridd.wire import decode_weights, encode_weights


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def model(kernel: Sequence[float], bias: float) -> Weights:
    """A tiny two-array model: a (2,) kernel and a (1,) bias."""
    return [f32(*kernel), f32(bias)]


def scalars(values: Sequence[float], samples: Sequence[float] | None = None) -> list[Update]:
    """One-array, one-coordinate updates: easy to compute by hand."""
    samples = samples or [1] * len(values)
    return [Update([f32(v)], s, f"w{i}") for i, (v, s) in enumerate(zip(values, samples,
                                                                         strict=True))]


ZERO = model([0, 0], 0)
THREE = [
    Update(model([1, 2], 3), 1, "a"),
    Update(model([3, 4], 5), 1, "b"),
    Update(model([5, 6], 7), 2, "c"),
]


def every_builtin() -> list[Strategy]:
    return [FedAvg(), FedProx(), FedAdam(), FedYogi(), FedMedian(), TrimmedMean(), Krum()]


def equal(a: Weights, b: Weights) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)
        for x, y in zip(a, b, strict=True)
    )


# -- the means ----------------------------------------------------------------------------------


def test_fedavg_is_the_sample_weighted_mean() -> None:
    out = FedAvg().aggregate(ZERO, THREE)
    # (1·1 + 3·1 + 5·2) / 4 = 3.5, (2 + 4 + 12) / 4 = 4.5, (3 + 5 + 14) / 4 = 5.5
    assert equal(out, model([3.5, 4.5], 5.5))
    # the one weighted mean in gridd: bit for bit what average_weights gives
    assert equal(out, average_weights([u.weights for u in THREE], [1, 1, 2]))


def test_fedavg_accepts_fractional_sample_weights() -> None:
    out = FedAvg().aggregate([f32(0)], scalars([0, 4], samples=[0.5, 1.5]))
    assert out[0][0] == pytest.approx(3.0)


def test_fedprox_aggregates_as_fedavg_and_tells_workers_mu() -> None:
    prox = FedProx(mu=0.05)
    assert equal(prox.aggregate(ZERO, THREE), FedAvg().aggregate(ZERO, THREE))
    assert prox.local_options() == {"mu": 0.05}
    assert FedProx().local_options() == {"mu": 0.01}
    assert FedProx(mu=0).local_options() == {"mu": 0.0}
    assert all(s.local_options() == {} for s in every_builtin() if not isinstance(s, FedProx))


# -- robust rules -------------------------------------------------------------------------------


def test_median_ignores_one_outlier_and_sample_claims() -> None:
    # sorted 1, 2, 3, 1000 -> (2 + 3) / 2; the outlier's huge claim changes nothing
    out = FedMedian().aggregate([f32(0)], scalars([3, 1000, 1, 2], samples=[1, 10**6, 1, 1]))
    assert out[0][0] == 2.5
    assert FedMedian().aggregate([f32(0)], scalars([1, 1000, 2]))[0][0] == 2.0
    # per coordinate, not per update
    ups = [Update(model([1, 9], 0), 1), Update(model([2, 8], 0), 1), Update(model([3, 7], 9), 1)]
    assert equal(FedMedian().aggregate(ZERO, ups), model([2, 8], 0))


def test_trimmed_mean_drops_both_ends_per_coordinate() -> None:
    # trim 1 of 1, 2, 3, 1000 each side -> mean(2, 3)
    assert TrimmedMean(trim=1).aggregate([f32(0)], scalars([3, 1000, 1, 2]))[0][0] == 2.5
    # beta 0.2 of 10 values trims 2 each side: -500, -400 and 900, 1000 go, mean(1..6) = 3.5
    values = [1, 2, 3, 4, 5, 6, -500, -400, 900, 1000]
    assert TrimmedMean(beta=0.2).aggregate([f32(0)], scalars(values))[0][0] == 3.5
    # default beta 0.1 trims one each side: mean(-400, 1..6, 900) = 521 / 8
    assert TrimmedMean().aggregate([f32(0)], scalars(values))[0][0] == 521 / 8
    assert TrimmedMean(beta=0.0).aggregate([f32(0)], scalars([1, 2, 6]))[0][0] == 3.0
    assert TrimmedMean().cut(30) == 3 and TrimmedMean(beta=0.29).cut(100) == 29


def test_trimmed_mean_with_a_trim_count_refuses_too_few_updates() -> None:
    assert TrimmedMean(trim=2).min_updates() == 5
    with pytest.raises(StrategyError, match="trimmed_mean: need at least 5 updates, got 4"):
        TrimmedMean(trim=2).aggregate([f32(0)], scalars([1, 2, 3, 4]))


def test_krum_scores_by_hand() -> None:
    # 0, 1, 2, 10 with f = floor((4-3)/2) = 0: each score sums the 2 smallest squared distances
    # 0: 1 + 4 = 5   1: 1 + 1 = 2   2: 1 + 4 = 5   10: 64 + 81 = 145
    krum = Krum()
    out = krum.aggregate([f32(0)], scalars([0, 1, 2, 10]))
    assert out[0][0] == 1.0
    assert krum.last_scores == [5.0, 2.0, 5.0, 145.0]
    assert krum.last_selected == ["w1"] and krum.last_selected_indices == [1]
    # Multi-Krum m=2: 1 then 0 (tie with 2 goes to the earlier); plain or by samples
    multi = Krum(m=2)
    assert multi.aggregate([f32(0)], scalars([0, 1, 2, 10]))[0][0] == 0.5
    assert multi.last_selected == ["w1", "w0"]
    weighted = Krum(m=2, weighted=True)
    assert weighted.aggregate([f32(0)], scalars([0, 1, 2, 10], [1, 3, 1, 1]))[0][0] == 0.75


def _honest_and_attackers(honest: int, attackers: int, seed: int) -> list[Update]:
    rng = np.random.default_rng(seed)
    base = [rng.normal(0, 0.1, (8, 4)), rng.normal(0, 0.1, 4)]
    ups = [
        Update([(b + rng.normal(0, 0.01, b.shape)).astype(np.float32) for b in base], 50,
               f"honest{i}")
        for i in range(honest)
    ]
    ups += [
        Update([rng.normal(0, 1.0, b.shape).astype(np.float32) for b in base], 50, f"evil{i}")
        for i in range(attackers)
    ]
    order = rng.permutation(len(ups))
    return [ups[i] for i in order]


@pytest.mark.parametrize("honest, attackers", [(3, 1), (8, 2)])
def test_krum_keeps_honest_updates_against_random_weights(honest: int, attackers: int) -> None:
    ups = _honest_and_attackers(honest, attackers, seed=honest)
    current = [np.zeros((8, 4), np.float32), np.zeros(4, np.float32)]
    krum = Krum()
    out = krum.aggregate(current, ups)
    assert len(krum.last_selected) == 1 and krum.last_selected[0].startswith("honest")
    chosen = ups[krum.last_selected_indices[0]]
    assert equal(out, chosen.weights)
    multi = Krum(m=honest - 1)
    multi.aggregate(current, ups)
    assert all(s.startswith("honest") for s in multi.last_selected)
    # the plain mean is dragged far off by the same attackers
    honest_mean = average_weights([u.weights for u in ups if u.sender.startswith("honest")])
    fedavg = FedAvg().aggregate(current, ups)
    assert np.abs(fedavg[0] - honest_mean[0]).max() > 0.1
    assert np.abs(out[0] - honest_mean[0]).max() < 0.05


def test_krum_needs_2f_plus_3_updates() -> None:
    assert Krum(f=1).min_updates() == 5
    assert Krum(f=2, m=6).min_updates() == 8
    assert Krum().min_updates() == 3  # f follows n: floor((n-3)/2)
    assert [Krum(m=m).min_updates() for m in (3, 4, 5)] == [3, 4, 6]
    assert [Krum().attackers(n) for n in (3, 4, 5, 10)] == [0, 0, 1, 3]
    with pytest.raises(StrategyError, match="krum: need at least 5 updates, got 4"):
        Krum(f=1).aggregate([f32(0)], scalars([0, 1, 2, 3]))
    with pytest.raises(StrategyError, match="krum: need at least 3 updates, got 2"):
        Krum().aggregate([f32(0)], scalars([0, 1]))


# -- server-side optimizers ---------------------------------------------------------------------


def test_fedadam_first_step_by_hand() -> None:
    # one update at 1 from 0: Δ = 1, m = 0.1·1, v = 0.99·tau² + 0.01·1
    out = FedAdam().aggregate([f32(0)], scalars([1]))
    expected = 0.1 * 0.1 / (math.sqrt(0.99 * 1e-6 + 0.01) + 1e-3)
    assert out[0][0] == np.float32(expected)


def test_optimizer_defaults_are_flowers() -> None:
    assert FedAdam().config() == {"name": "fedadam", "eta": 0.1, "beta_1": 0.9, "beta_2": 0.99,
                                  "tau": 1e-3}
    assert FedYogi().config() == {"name": "fedyogi", "eta": 0.01, "beta_1": 0.9, "beta_2": 0.99,
                                  "tau": 1e-3}


def test_fedyogi_steps_by_hand() -> None:
    yogi = FedYogi(eta=0.5, beta_1=0.5, beta_2=0.75, tau=0.1)
    # step 1: Δ = 2 (the samples-weighted mean of 1 and 3 with 1:3 claims is 2.5; from 0.5)
    out = yogi.aggregate([f32(0.5)], scalars([1, 3], [1, 3]))
    m1, v1 = 0.5 * 2, 0.01 + 0.25 * 4  # v0 = tau² < Δ² so v grows by (1-beta_2)·Δ²
    x1 = 0.5 + 0.5 * m1 / (math.sqrt(v1) + 0.1)
    assert out[0][0] == np.float32(x1)
    # step 2: Δ = 0.1 - x1 (small): v > Δ², so Yogi shrinks v by (1-beta_2)·Δ²
    x1 = float(out[0][0])
    out2 = yogi.aggregate([f32(x1)], scalars([0.1]))
    d = float(np.float32(0.1)) - x1
    m2 = 0.5 * m1 + 0.5 * d
    v2 = v1 - 0.25 * d * d
    assert out2[0][0] == np.float32(x1 + 0.5 * m2 / (math.sqrt(v2) + 0.1))
    state = yogi.state_dict()
    assert state["t"] == 2 and state["m"][0][0] == pytest.approx(m2)
    assert state["v"][0][0] == pytest.approx(v2)


def test_fedadam_and_fedyogi_differ_where_v_is_large() -> None:
    adam, yogi = FedAdam(eta=0.1, tau=0.1), FedYogi(eta=0.1, tau=0.1)
    for s in (adam, yogi):
        s.aggregate([f32(0)], scalars([2]))
    # Adam: v = 0.99·v + 0.01·Δ²; Yogi: v - 0.01·Δ² (v > Δ² = 0.01)
    a = adam.aggregate([f32(0)], scalars([0.1]))[0][0]
    y = yogi.aggregate([f32(0)], scalars([0.1]))[0][0]
    assert a != y


@pytest.mark.parametrize("cls", [FedAdam, FedYogi])
def test_optimizer_state_round_trip_gives_the_same_next_step(cls: type[Strategy]) -> None:
    ups = _honest_and_attackers(4, 0, seed=7)
    current = [np.zeros((8, 4), np.float32), np.zeros(4, np.float32)]
    first = cls()
    after1 = first.aggregate(current, ups)
    state = first.state_dict()
    # as the lead stores it: arrays through gridd.wire's weights encoding
    stored = {
        "t": state["t"],
        "m": decode_weights(encode_weights(state["m"])),
        "v": decode_weights(encode_weights(state["v"])),
    }
    resumed = cls()
    resumed.load_state(stored)
    ups2 = _honest_and_attackers(4, 0, seed=8)
    assert equal(first.aggregate(after1, ups2), resumed.aggregate(after1, ups2))
    assert first.state_dict()["t"] == resumed.state_dict()["t"] == 2
    # a fresh strategy takes a different step: the state mattered
    assert not equal(cls().aggregate(after1, ups2), resumed.aggregate(after1, ups2))


def test_optimizer_state_is_copied_both_ways() -> None:
    s = FedAdam()
    s.aggregate([f32(0)], scalars([1]))
    state = s.state_dict()
    state["m"][0][0] = 99.0
    assert s.state_dict()["m"][0][0] != 99.0
    other = FedAdam()
    given = s.state_dict()
    other.load_state(given)
    given["v"][0][0] = 99.0
    assert other.state_dict()["v"][0][0] != 99.0


@pytest.mark.parametrize(
    "state, message",
    [
        ({"t": 1, "m": [], "v": []}, "t=1 with 0 moment arrays"),
        ({"t": 0, "m": [np.zeros(1)], "v": [np.zeros(1)]}, "t=0 with 1 moment arrays"),
        ({"t": 1, "m": [np.zeros(1)]}, "keys t, m, v"),
        ({"t": -1, "m": [], "v": []}, "integer >= 0"),
        ({"t": 1, "m": [np.array([np.nan])], "v": [np.zeros(1)]}, r"m\[0\] is not a finite"),
        ({"t": 1, "m": [np.zeros(1)], "v": [-np.ones(1)]}, "v has negative values"),
        ({"t": 1, "m": [np.zeros(1)], "v": [np.zeros(2)]}, "different shapes"),
        ({"t": 1, "m": "x", "v": []}, "m must be a list"),
        ([1, 2], "keys t, m, v"),
    ],
)
def test_bad_optimizer_state_is_refused_and_keeps_the_old(state: object, message: str) -> None:
    s = FedAdam()
    s.aggregate([f32(0)], scalars([1]))
    before = s.state_dict()
    with pytest.raises(StrategyError, match=message):
        s.load_state(state)  # type: ignore[arg-type]
    after = s.state_dict()
    assert after["t"] == before["t"] and equal(after["m"], before["m"])


def test_optimizer_state_for_another_model_is_refused() -> None:
    s = FedAdam()
    s.aggregate([f32(0)], scalars([1]))
    with pytest.raises(StrategyError, match="optimizer state is for shapes"):
        s.aggregate(ZERO, THREE)


def test_optimizer_overflow_is_refused_and_the_state_kept() -> None:
    s = FedAdam(eta=1e39)  # a step far past float32's range
    with pytest.raises(StrategyError, match="overflowed; state left unchanged"):
        s.aggregate([f32(0)], scalars([1]))
    assert s.state_dict() == {"t": 0, "m": [], "v": []}


def test_stateless_strategies_have_empty_state() -> None:
    for s in (FedAvg(), FedMedian(), TrimmedMean(), Krum()):
        assert s.state_dict() == {}
        s.load_state({})
        with pytest.raises(StrategyError, match="has no state"):
            s.load_state({"t": 1})


# -- the contract every strategy keeps ----------------------------------------------------------


@pytest.mark.parametrize("strategy", every_builtin(), ids=lambda s: s.name)
def test_output_is_new_float32_and_inputs_are_untouched(strategy: Strategy) -> None:
    ups = _honest_and_attackers(5, 1, seed=3)
    current = [np.full((8, 4), 0.5, np.float32), np.zeros(4, np.float32)]
    before = copy.deepcopy((current, ups))
    out = strategy.aggregate(current, ups)
    assert [a.dtype for a in out] == [np.float32, np.float32]
    assert [a.shape for a in out] == [(8, 4), (4,)]
    assert equal(current, before[0])
    assert all(equal(u.weights, b.weights) for u, b in zip(ups, before[1], strict=True))
    # the result shares no memory with the inputs
    for a in out:
        assert not any(np.shares_memory(a, w) for u in ups for w in u.weights)
        assert not any(np.shares_memory(a, w) for w in current)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_same_inputs_same_outputs(name: str) -> None:
    ups = _honest_and_attackers(6, 1, seed=5)
    current = [np.zeros((8, 4), np.float32), np.zeros(4, np.float32)]
    a = resolve(name).aggregate(current, ups)
    b = resolve(name).aggregate(current, ups)
    assert equal(a, b)


@pytest.mark.parametrize("strategy", every_builtin(), ids=lambda s: s.name)
def test_refusals(strategy: Strategy) -> None:
    prefix = strategy.name + ": "
    with pytest.raises(StrategyError, match=prefix + "no updates to aggregate"):
        strategy.aggregate(ZERO, [])
    good = [Update(model([i, i], i), 1, f"p{i}") for i in range(5)]
    bad_shape = good[:4] + [Update([f32(1, 2, 3), f32(0)], 1, "eve")]
    with pytest.raises(StrategyError, match=r"update 4 from 'eve': weights\[0\]: expected shape"):
        strategy.aggregate(ZERO, bad_shape)
    nan = good[:4] + [Update(model([1, float("nan")], 0), 1, "eve")]
    with pytest.raises(StrategyError, match=r"weights\[0\]: 1 non-finite"):
        strategy.aggregate(ZERO, nan)
    inf = good[:4] + [Update(model([1, 1], float("inf")), 1)]
    with pytest.raises(StrategyError, match=r"update 4: weights\[1\]: 1 non-finite"):
        strategy.aggregate(ZERO, inf)
    f64 = good[:4] + [Update([np.zeros(2), f32(0)], 1)]
    with pytest.raises(StrategyError, match="expected dtype float32, got float64"):
        strategy.aggregate(ZERO, f64)
    short = good[:4] + [Update(model([1, 1], 1)[:1], 1)]
    with pytest.raises(StrategyError, match="expected 2 arrays, got 1"):
        strategy.aggregate(ZERO, short)
    with pytest.raises(StrategyError, match="expected an Update, got tuple"):
        strategy.aggregate(ZERO, good[:4] + [(model([1, 1], 1), 1)])  # type: ignore[list-item]
    with pytest.raises(StrategyError, match="current weights"):
        strategy.aggregate([f32(0, float("nan")), f32(0)], good)
    with pytest.raises(StrategyError, match="current weights"):
        strategy.aggregate(np.zeros(2, np.float32), good)  # type: ignore[arg-type]


@pytest.mark.parametrize("samples", [0, -3, float("nan"), float("inf"), True, "10", None])
def test_update_refuses_bad_sample_counts(samples: object) -> None:
    with pytest.raises(StrategyError, match="update samples"):
        Update(model([1, 1], 1), samples)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: FedProx(mu=-0.1), "fedprox mu"),
        (lambda: FedProx(mu=float("nan")), "fedprox mu"),
        (lambda: FedAdam(eta=0), "fedadam eta"),
        (lambda: FedAdam(beta_1=1.0), "fedadam beta_1"),
        (lambda: FedYogi(beta_2=-0.1), "fedyogi beta_2"),
        (lambda: FedYogi(tau=0), "fedyogi tau"),
        (lambda: TrimmedMean(beta=0.5), "trimmed_mean beta"),
        (lambda: TrimmedMean(beta=0.1, trim=1), "beta or trim, not both"),
        (lambda: TrimmedMean(trim=-1), "trimmed_mean trim"),
        (lambda: TrimmedMean(trim=1.5), "trimmed_mean trim: expected an integer"),
        (lambda: Krum(f=-1), "krum f"),
        (lambda: Krum(m=0), "krum m"),
        (lambda: Krum(f=True), "krum f: expected an integer"),
        (lambda: Krum(weighted="yes"), "krum weighted"),
    ],
)
def test_bad_hyperparameters_are_refused(build: object, message: str) -> None:
    with pytest.raises(StrategyError, match=message):
        build()  # type: ignore[operator]


# -- names and configs --------------------------------------------------------------------------


def test_builtins_are_named_as_documented() -> None:
    assert sorted(BUILTINS) == sorted(
        ["fedavg", "fedprox", "fedadam", "fedyogi", "fedmedian", "trimmed_mean", "krum"]
    )


@pytest.mark.parametrize(
    "strategy",
    [FedAvg(), FedProx(mu=0.3), FedAdam(eta=0.05, tau=1e-4), FedYogi(beta_1=0.8), FedMedian(),
     TrimmedMean(beta=0.2), TrimmedMean(trim=2), Krum(), Krum(f=2, m=3, weighted=True)],
    ids=repr,
)
def test_config_round_trip(strategy: Strategy) -> None:
    import json

    cfg = json.loads(json.dumps(strategy.config()))
    again = strategy_from_config(cfg)
    assert type(again) is type(strategy) and again.config() == strategy.config()
    assert resolve(cfg).config() == cfg


def test_resolve() -> None:
    assert isinstance(resolve(None), FedAvg)
    assert isinstance(resolve("krum"), Krum) and isinstance(resolve("FedMedian"), FedMedian)
    mine = Krum(f=1)
    assert resolve(mine) is mine
    with pytest.raises(StrategyError, match="unknown strategy 'fedsgd'"):
        resolve("fedsgd")
    with pytest.raises(StrategyError, match="expected a name .* got int"):
        resolve(3)  # type: ignore[arg-type]
    with pytest.raises(StrategyError, match=r"bad parameters \['lr'\]"):
        strategy_from_config({"name": "fedprox", "lr": 0.1})
    with pytest.raises(StrategyError, match="needs a 'name'"):
        strategy_from_config({"mu": 0.1})
    with pytest.raises(StrategyError, match="fedprox mu"):
        strategy_from_config({"name": "fedprox", "mu": -1})


# -- a notebook user's own strategy -------------------------------------------------------------


class LargestClaimWins(Strategy):
    """Deliberately odd: returns the update with the largest claim, as float64."""

    name = "largest_claim"

    def __init__(self) -> None:
        self.calls = 0

    def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
        self.calls += 1
        best = max(updates, key=lambda u: u.samples)
        return [w.astype(np.float64) + 0 * c for w, c in zip(best.weights, current, strict=True)]


class HalfStep(FedAvg):
    """Moves only half way from current to FedAvg, reusing the built-in."""

    name = "half_step"

    def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
        avg = super().aggregate(current, updates)
        return [(c + a) / 2 for c, a in zip(current, avg, strict=True)]


def test_a_custom_strategy_works_through_the_same_seam() -> None:
    mine = LargestClaimWins()
    out = mine.aggregate(ZERO, THREE)
    assert equal(out, THREE[2].weights)  # float32 out, although it returned float64
    assert resolve(mine) is mine and mine.config() == {"name": "largest_claim"}
    assert mine.local_options() == {} and mine.min_updates() == 1 and mine.state_dict() == {}
    assert repr(mine) == "LargestClaimWins()"
    # it only ever sees checked input
    with pytest.raises(StrategyError, match="largest_claim: update 0 .* non-finite"):
        mine.aggregate(ZERO, [Update(model([float("nan"), 0], 0), 1, "eve")])
    assert mine.calls == 1
    with pytest.raises(StrategyError, match="unknown strategy 'largest_claim'.*pass an instance"):
        strategy_from_config(mine.config())
    half = HalfStep()
    assert equal(half.aggregate(ZERO, THREE), model([1.75, 2.25], 2.75))


def test_a_custom_strategy_cannot_hand_back_bad_weights() -> None:
    class WrongShape(Strategy):
        def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
            return [np.zeros(3), current[1]]

    class NaNs(Strategy):
        def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
            return [c * np.nan for c in current]

    class NotAList(Strategy):
        def aggregate(self, current: Weights, updates: Sequence[Update]) -> Weights:
            return current[0]  # type: ignore[return-value]

    with pytest.raises(StrategyError, match=r"custom: aggregate returned shape \(3,\)"):
        WrongShape().aggregate(ZERO, THREE)
    with pytest.raises(StrategyError, match="produced non-finite"):
        NaNs().aggregate(ZERO, THREE)
    with pytest.raises(StrategyError, match="returned ndarray, not a list"):
        NotAList().aggregate(ZERO, THREE)


def test_a_strategy_without_aggregate_cannot_be_made() -> None:
    class Forgot(Strategy):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Forgot()  # type: ignore[abstract]


# -- tree mode goes through FedAvg and keeps its clipping ---------------------------------------


def _tree_peers(cap: float) -> tuple[TreePeer, list[TreePeer]]:
    """Three memory peers with 24, 120 and 900 training examples, and a peer observing."""
    x, y, _, _ = load_digits_split()
    net = MemoryNetwork()
    recipe = Recipe("digits_mlp", (64,), 10, learning_rate=0.1, batch_size=16, local_epochs=1)
    genesis = create_genesis(net.store(), recipe, init_seed=3)
    settings = TreeSettings(model="no_tf", num_of_sampling_round=4, timeout=5.0,
                            training_interval=0.0, announce_interval=1.0,
                            sample_weight_cap=cap)
    peers = []
    for i, n in enumerate((24, 120, 900)):
        data = Dataset(x[:n], y[:n], x[n : n + 40], y[n : n + 40])
        peer = TreePeer(genesis_id=genesis, broker=net.broker(f"p{i}"), store=net.store(),
                        dataset=data, settings=settings, seed=i, prefer="numpy",
                        metrics=TreeMetrics())
        peer.open()
        peers.append(peer)
    for _ in range(3):
        for p in peers:
            p.process_messages()
            p.train_step()
    for _ in range(3):
        for p in peers:
            p.process_messages()
    return peers[0], peers


@pytest.mark.parametrize("cap", [4.0, 0.0])
def test_tree_average_is_fedavg_with_clipped_claims(cap: float) -> None:
    peer, peers = _tree_peers(cap)
    try:
        txs = [t for t in peer.tangle.transactions() if "samples" in t.metadata]
        by_claim = {float(t.metadata["samples"]): t for t in txs}
        assert set(by_claim) == {24.0, 120.0, 900.0}, "every peer published"
        ids = [by_claim[c].id for c in (24.0, 120.0, 900.0)]
        weights = [peer.weights_of(i) for i in ids]
        # claims 24, 120, 900 and this peer's own 24: median 72, so 900 is clipped to 4·72
        coef = [24.0, 120.0, 288.0] if cap else [1.0, 1.0, 1.0]
        expected = [
            sum(c * w[k].astype(np.float64) for c, w in zip(coef, weights, strict=True))
            / sum(coef)
            for k in range(len(weights[0]))
        ]
        got = peer.average(ids)
        assert [a.dtype for a in got] == [np.float32] * len(expected)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)
        # and not the unclipped weighting: the clipping is what made the difference
        unclipped = average_weights(weights, [24, 120, 900])
        assert not np.allclose(got[0], unclipped[0], rtol=1e-4, atol=1e-6)
        with pytest.raises(StrategyError, match="fedavg: no updates to aggregate"):
            peer.average([])
    finally:
        for p in peers:
            p.close()

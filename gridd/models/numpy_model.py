"""A pure-numpy Dense network for peers without TensorFlow (MODEL=no_tf).

It mirrors the equivalent Keras model exactly: same weight layout ([kernel (in, out),
bias (out,)] float32 per Dense layer), glorot-uniform kernels and zero biases, the same
SGD and Adam update rules, and cross-entropy computed from the logits as Keras' TensorFlow
backend does for a softmax output. So a numpy peer and a Keras peer can exchange weights and
agree on loss and accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gridd.models.base import WeightSpec, check_weights, check_xy, resolve_fit_args
from gridd.models.recipe import Recipe

_EPSILON = 1e-7  # keras.backend.epsilon(), Adam's denominator guard
_ADAM_BETA1 = 0.9
_ADAM_BETA2 = 0.999


def layer_sizes(recipe: Recipe) -> list[int]:
    """[flattened input, hidden..., classes] for a builtin architecture."""
    if recipe.architecture == "keras":
        raise ValueError(
            "recipe.architecture: 'keras' models need TensorFlow; "
            "the numpy model builds only the builtin architectures"
        )
    return [math.prod(recipe.input_shape), *recipe.hidden_layers(), recipe.classes]


def glorot_uniform(sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Glorot-uniform kernels and zero biases, as Keras initialises Dense layers."""
    rng = np.random.default_rng(seed)
    weights: list[np.ndarray] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32))
        weights.append(np.zeros(fan_out, dtype=np.float32))
    return weights


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _loss_acc(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample cross-entropy (log-sum-exp minus the true logit) and hits."""
    top = logits.max(axis=1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    return lse - logits[np.arange(len(y)), y], logits.argmax(axis=1) == y


class NumpyModel:
    """Dense relu layers and a softmax output, trained with minibatch SGD or Adam."""

    def __init__(
        self, recipe: Recipe, weights: Sequence[np.ndarray] | None = None, seed: int = 0
    ) -> None:
        self.recipe = recipe
        self._sizes = layer_sizes(recipe)
        self._spec: WeightSpec = [
            (shape, "float32")
            for fan_in, fan_out in zip(self._sizes[:-1], self._sizes[1:], strict=True)
            for shape in ((fan_in, fan_out), (fan_out,))
        ]
        self._weights = glorot_uniform(self._sizes, seed)
        if weights is not None:
            self.set_weights(weights)
        self._rng = np.random.default_rng([seed, 1])  # shuffle stream, apart from the init's
        # Adam state survives across train() calls, as a compiled Keras optimizer's does.
        self._step = 0
        self._m = [np.zeros_like(w) for w in self._weights]
        self._v = [np.zeros_like(w) for w in self._weights]

    # -- weights -------------------------------------------------------------------------

    def weight_spec(self) -> WeightSpec:
        return list(self._spec)

    def get_weights(self) -> list[np.ndarray]:
        return [w.copy() for w in self._weights]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        check_weights(self._spec, weights)
        self._weights = [np.array(w, dtype=np.float32, copy=True) for w in weights]

    # -- inference -----------------------------------------------------------------------

    def _forward(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Activations entering each layer, and the output logits."""
        inputs = []
        h = x
        n_layers = len(self._weights) // 2
        for k in range(n_layers):
            inputs.append(h)
            h = h @ self._weights[2 * k] + self._weights[2 * k + 1]
            if k < n_layers - 1:
                h = np.maximum(h, 0.0)
        return inputs, h

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, classes)."""
        x, _ = check_xy(self.recipe, x)
        return _softmax(self._forward(x.reshape(len(x), -1))[1])

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        x, y = check_xy(self.recipe, x, y)
        assert y is not None
        losses, hits = _loss_acc(self._forward(x.reshape(len(x), -1))[1], y)
        return {"loss": float(losses.mean()), self.recipe.metric: float(hits.mean())}

    # -- training ------------------------------------------------------------------------

    def _gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        inputs, logits = self._forward(x)
        delta = _softmax(logits)
        delta[np.arange(len(y)), y] -= 1.0
        delta /= len(y)
        grads: list[np.ndarray] = [np.empty(0)] * len(self._weights)
        for k in range(len(inputs) - 1, -1, -1):
            grads[2 * k] = inputs[k].T @ delta
            grads[2 * k + 1] = delta.sum(axis=0)
            if k:
                delta = (delta @ self._weights[2 * k].T) * (inputs[k] > 0)
        return grads, logits

    def _apply(self, grads: list[np.ndarray]) -> None:
        lr = self.recipe.learning_rate
        if self.recipe.optimizer == "sgd":
            for w, g in zip(self._weights, grads, strict=True):
                w -= lr * g
            return
        self._step += 1
        t = self._step
        alpha = lr * math.sqrt(1.0 - _ADAM_BETA2**t) / (1.0 - _ADAM_BETA1**t)
        for w, g, m, v in zip(self._weights, grads, self._m, self._v, strict=True):
            m += (1.0 - _ADAM_BETA1) * (g - m)
            v += (1.0 - _ADAM_BETA2) * (g * g - v)
            w -= alpha * m / (np.sqrt(v) + _EPSILON)

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int | None = None,
        batch_size: int | None = None,
        seed: int | None = None,
    ) -> dict[str, float]:
        """Shuffled minibatch training; returns the last epoch's mean loss and accuracy.

        Like Keras' fit, the reported figures are averaged over the epoch's batches as they
        were seen (before each update), weighted by batch size.
        """
        x, y = check_xy(self.recipe, x, y)
        assert y is not None
        epochs, batch_size = resolve_fit_args(self.recipe, epochs, batch_size)
        x = x.reshape(len(x), -1)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        n = len(x)
        loss_sum = hit_sum = 0.0
        for _ in range(epochs):
            order = rng.permutation(n)
            loss_sum = hit_sum = 0.0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                grads, logits = self._gradients(x[idx], y[idx])
                losses, hits = _loss_acc(logits, y[idx])
                loss_sum += float(losses.sum())
                hit_sum += float(hits.sum())
                self._apply(grads)
        return {"loss": loss_sum / n, self.recipe.metric: hit_sum / n}

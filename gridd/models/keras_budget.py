"""How many parameters a .keras model will allocate, read from its config.json alone.

A .keras file from the network is a few KB of JSON that may declare gigabytes of weights:
Keras allocates them while deserializing, before any check of ours could run on the built
model. So the parameter count is derived here, from the config, before anything is built:
input shapes come from the config (InputLayer batch_shape, build_config), are chained through
the layers (Functional models by their inbound nodes), and a layer kind that cannot be sized
is refused rather than guessed. Where a layer's own build_config and the chained shape differ,
the larger count is taken (Keras builds from both). Pure Python: no TensorFlow import.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Shape = tuple[int | None, ...]

DEFAULT_MAX_PARAMS = 50_000_000  # ~200 MB of float32 weights, ~800 MB training with Adam
MAX_LAYERS = 4096  # layer entries in one file, nested models included (ResNet152 has ~500)
MAX_DEPTH = 8  # models nested inside models
FILE_SLACK = 16 * 1024 * 1024  # HDF5 metadata and optimizer scalars around the weights

# Optimizer state per parameter (Adam: m and v); unknown optimizers count as 3.
OPTIMIZER_SLOTS = {
    "adam": 2, "adamw": 2, "adamax": 2, "nadam": 2, "adadelta": 2, "ftrl": 2, "lamb": 2,
    "adafactor": 2, "adagrad": 1, "lion": 1, "rmsprop": 1, "sgd": 0,
}


class UnsizableModelError(ValueError):
    """A config whose parameter count cannot be derived: refused, never guessed."""


@dataclass(frozen=True)
class Budget:
    """params: what model.count_params() will say; bytes: weights + gradients + optimizer
    state in memory, which also bounds what the weights file may legitimately hold."""

    params: int
    bytes: int


@dataclass
class _Tally:
    params: int = 0
    bytes: int = 0

    def add(self, other: _Tally) -> None:
        self.params += other.params
        self.bytes += other.bytes


def estimate(config: Any) -> Budget:
    """The budget of a .keras config.json (a Sequential or Functional model)."""
    if not isinstance(config, dict):
        raise UnsizableModelError("config.json is not an object")
    counter = _Counter()
    kind = config.get("class_name")
    if kind not in ("Sequential", "Functional"):
        raise UnsizableModelError(
            f"the model is a {kind!r}; gridd loads Sequential and Functional models only")
    tally, _ = counter.model(config, None, depth=0)
    slots = optimizer_slots(config.get("compile_config"))
    return Budget(tally.params, tally.bytes * (2 + slots))


def optimizer_slots(compile_config: Any) -> int:
    """Optimizer variables kept per parameter, from the saved compile config."""
    if not isinstance(compile_config, dict) or compile_config.get("optimizer") is None:
        return 0
    opt = compile_config["optimizer"]
    if isinstance(opt, str):
        name, cfg = opt, {}
    elif isinstance(opt, dict):
        name, cfg = _get(opt, "class_name", str), _config(opt)
    else:
        raise UnsizableModelError(f"the optimizer {opt!r} is neither a name nor an object")
    slots = OPTIMIZER_SLOTS.get(name.lower(), 3)
    if cfg.get("amsgrad") is True:
        slots += 1
    if name.lower() in ("sgd", "rmsprop") and cfg.get("momentum"):
        slots += 1
    if name.lower() == "rmsprop" and cfg.get("centered") is True:
        slots += 1
    if cfg.get("use_ema") is True:
        slots += 1
    return slots


# -- reading config values ---------------------------------------------------------------


def _get(d: dict[str, Any], key: str, kind: type, default: Any = ...) -> Any:
    value = d.get(key, default)
    if value is ...:
        raise UnsizableModelError(f"{key!r} is missing from a layer config")
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise UnsizableModelError(f"{key!r} is {value!r}, expected {kind.__name__}")
    return value


def _positive(cfg: dict[str, Any], key: str) -> int:
    value = _get(cfg, key, int)
    if value < 1:
        raise UnsizableModelError(f"{key!r} is {value}, expected a positive integer")
    return value


def _ints(cfg: dict[str, Any], key: str, rank: int, default: Any = ...) -> tuple[int, ...]:
    """An int or a list of `rank` positive ints (kernel_size, strides, pool_size...)."""
    value = cfg.get(key, default)
    if value is ...:
        raise UnsizableModelError(f"{key!r} is missing from a layer config")
    values = [value] * rank if isinstance(value, int) else value
    if (not isinstance(values, list) or len(values) != rank
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)):
        raise UnsizableModelError(f"{key!r} is {value!r}, expected {rank} positive integers")
    return tuple(values)


def _config(entry: dict[str, Any]) -> dict[str, Any]:
    cfg = entry.get("config")
    if not isinstance(cfg, dict):
        raise UnsizableModelError(f"{entry.get('class_name')!r} has no config object")
    return cfg


def _shape(value: Any, what: str) -> Shape:
    if not isinstance(value, list) or not value or len(value) > 16 or any(
        d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 0)
        for d in value
    ):
        raise UnsizableModelError(f"{what} is {value!r}, not a shape")
    return tuple(value)


def _build_shapes(entry: dict[str, Any]) -> list[Shape] | None:
    """The input shape(s) in a layer's build_config, which Keras builds from on load."""
    build = entry.get("build_config")
    if not isinstance(build, dict) or build.get("input_shape") is None:
        return None
    value = build["input_shape"]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [_shape(v, "build_config.input_shape") for v in value]
    if isinstance(value, dict):
        return [_shape(v, "build_config.input_shape") for v in value.values()]
    return [_shape(value, "build_config.input_shape")]


def _itemsize(cfg: dict[str, Any]) -> int:
    """Bytes per variable: 8 for float64 policies, else 4 (float16 counted as 4: safe side)."""
    dtype = cfg.get("dtype")
    name = _config(dtype).get("name") if isinstance(dtype, dict) else dtype
    return 8 if isinstance(name, str) and "64" in name else 4


def _known(d: int | None, what: str) -> int:
    if d is None:
        raise UnsizableModelError(f"{what} is not known from the config")
    return d


def _channels_last(cfg: dict[str, Any]) -> bool:
    fmt = cfg.get("data_format", "channels_last")
    if fmt not in ("channels_last", "channels_first", None):
        raise UnsizableModelError(f"data_format {fmt!r} is not one Keras knows")
    return fmt != "channels_first"


def _rank(shape: Shape, rank: int, kind: str) -> None:
    if len(shape) != rank:
        raise UnsizableModelError(f"{kind} expects inputs of rank {rank}, got shape {shape}")


# -- weighted layers: (config, input shape or None) -> (params, output shape) -------------
# With no input shape (a layer outside the graph that was never built) only the weights
# that do not depend on the input are created.

Sized = tuple[int, Shape | None]


def _dense(cfg: dict[str, Any], shape: Shape | None) -> Sized:
    units = _positive(cfg, "units")
    if cfg.get("quantization_config") is not None:
        raise UnsizableModelError("quantized Dense layers are not supported")
    if shape is None:
        return 0, None
    d = _known(shape[-1], "the input width of a Dense layer")
    rank = cfg.get("lora_rank") or 0
    params = d * units + (units if cfg.get("use_bias", True) else 0)
    params += (d + units) * _positive(cfg, "lora_rank") if rank else 0
    return params, shape[:-1] + (units,)


def _embedding(cfg: dict[str, Any], shape: Shape | None) -> Sized:
    n, width = _positive(cfg, "input_dim"), _positive(cfg, "output_dim")
    if cfg.get("quantization_config") is not None:
        raise UnsizableModelError("quantized Embedding layers are not supported")
    params = n * width + ((n + width) * _positive(cfg, "lora_rank") if cfg.get("lora_rank")
                          else 0)
    return params, None if shape is None else shape + (width,)


def _window(n: int | None, k: int, stride: int, dilation: int, padding: str) -> int | None:
    """Output length of a convolution or pooling window along one axis (Keras' formula)."""
    if n is None:
        return None
    if padding in ("same", "causal"):
        return (n - 1) // stride + 1
    span = dilation * (k - 1) + 1
    if n < span:
        raise UnsizableModelError(f"a window of {span} does not fit an axis of length {n}")
    return (n - span) // stride + 1


def _padding(cfg: dict[str, Any], causal: bool = False) -> str:
    padding = cfg.get("padding", "valid")
    allowed = ("valid", "same", "causal") if causal else ("valid", "same")
    if padding not in allowed:
        raise UnsizableModelError(f"padding {padding!r} is not one of {allowed}")
    return padding


def _spatial(shape: Shape, last: bool) -> tuple[tuple[int | None, ...], int | None]:
    return (shape[1:-1], shape[-1]) if last else (shape[2:], shape[1])


def _with_spatial(batch: int | None, dims: tuple[int | None, ...], ch: int | None,
                  last: bool) -> Shape:
    return (batch, *dims, ch) if last else (batch, ch, *dims)


def _conv(rank: int) -> Callable[[dict[str, Any], Shape | None], Sized]:
    def size(cfg: dict[str, Any], shape: Shape | None) -> Sized:
        filters = _positive(cfg, "filters")
        kernel = _ints(cfg, "kernel_size", rank)
        strides = _ints(cfg, "strides", rank, 1)
        dilation = _ints(cfg, "dilation_rate", rank, 1)
        groups = _positive(cfg, "groups") if "groups" in cfg else 1
        padding = _padding(cfg, causal=rank == 1)
        if shape is None:
            return 0, None
        _rank(shape, rank + 2, f"Conv{rank}D")
        last = _channels_last(cfg)
        dims, ch = _spatial(shape, last)
        ch = _known(ch, f"the input channels of a Conv{rank}D layer")
        if ch % groups or filters % groups:
            raise UnsizableModelError(f"groups={groups} does not divide the channels")
        params = math.prod(kernel) * (ch // groups) * filters
        params += filters if cfg.get("use_bias", True) else 0
        out = tuple(_window(n, k, s, d, padding)
                    for n, k, s, d in zip(dims, kernel, strides, dilation, strict=True))
        return params, _with_spatial(shape[0], out, filters, last)
    return size


def _axes(cfg: dict[str, Any], shape: Shape) -> list[int]:
    axis = cfg.get("axis", -1)
    axes = [axis] if isinstance(axis, int) and not isinstance(axis, bool) else axis
    if not isinstance(axes, list) or not axes or any(
        isinstance(a, bool) or not isinstance(a, int) or not -len(shape) <= a < len(shape)
        for a in axes
    ):
        raise UnsizableModelError(f"axis {axis!r} does not fit input shape {shape}")
    return [a % len(shape) for a in axes]


def _batch_norm(cfg: dict[str, Any], shape: Shape | None) -> Sized:
    if cfg.get("renorm") is True:
        raise UnsizableModelError("BatchNormalization with renorm is not supported")
    if shape is None:
        return 0, None
    n = math.prod(_known(shape[a], "a normalized axis") for a in _axes(cfg, shape))
    per = 2 + (cfg.get("center", True) is not False) + (cfg.get("scale", True) is not False)
    return per * n, shape


def _layer_norm(cfg: dict[str, Any], shape: Shape | None) -> Sized:
    if shape is None:
        return 0, None
    n = math.prod(_known(shape[a], "a normalized axis") for a in _axes(cfg, shape))
    if cfg.get("rms_scaling") is True:
        return n, shape
    per = (cfg.get("center", True) is not False) + (cfg.get("scale", True) is not False)
    return per * n, shape


def _prelu(cfg: dict[str, Any], shape: Shape | None) -> Sized:
    if shape is None:
        return 0, None
    shared = cfg.get("shared_axes") or []
    shared = [shared] if isinstance(shared, int) else shared
    if not isinstance(shared, list) or any(
        isinstance(a, bool) or not isinstance(a, int) or not 1 <= a < len(shape) for a in shared
    ):
        raise UnsizableModelError(f"shared_axes {shared!r} does not fit shape {shape}")
    dims = [1 if i in shared else _known(d, "a PReLU axis") for i, d in enumerate(shape) if i]
    return math.prod(dims), shape


def _recurrent(gates: int) -> Callable[[dict[str, Any], Shape | None], Sized]:
    def size(cfg: dict[str, Any], shape: Shape | None) -> Sized:
        units = _positive(cfg, "units")
        if cfg.get("stateful") is True or cfg.get("return_state") is True:
            raise UnsizableModelError("stateful recurrent layers and return_state are not "
                                      "supported")
        if shape is None:
            return 0, None
        _rank(shape, 3, "a recurrent layer")
        d = _known(shape[-1], "the input width of a recurrent layer")
        bias = gates * units * (2 if gates == 3 and cfg.get("reset_after", True) else 1)
        params = gates * units * (d + units) + (bias if cfg.get("use_bias", True) else 0)
        out = (shape[0], shape[1], units) if cfg.get("return_sequences") else (shape[0], units)
        return params, out
    return size


WEIGHTED: dict[str, Callable[[dict[str, Any], Shape | None], Sized]] = {
    "Dense": _dense, "Embedding": _embedding, "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm, "PReLU": _prelu,
    "Conv1D": _conv(1), "Conv2D": _conv(2), "Conv3D": _conv(3),
    "SimpleRNN": _recurrent(1), "LSTM": _recurrent(4), "GRU": _recurrent(3),
}


# -- weightless layers: (config, input shapes) -> output shape ------------------------------


def _one(inputs: list[Shape], kind: str) -> Shape:
    if len(inputs) != 1:
        raise UnsizableModelError(f"{kind} takes one input, got {len(inputs)}")
    return inputs[0]


def _same(cfg: dict[str, Any], inputs: list[Shape]) -> Shape:
    return _one(inputs, "this layer")


def _flatten(cfg: dict[str, Any], inputs: list[Shape]) -> Shape:
    shape = _one(inputs, "Flatten")
    rest = shape[1:]
    return (shape[0], None if None in rest else math.prod(rest))


def _reshape(cfg: dict[str, Any], inputs: list[Shape]) -> Shape:
    shape = _one(inputs, "Reshape")
    target = cfg.get("target_shape")
    if not isinstance(target, list) or len(target) > 16 or any(
        isinstance(d, bool) or not isinstance(d, int) or d < -1 or d == 0 for d in target
    ) or target.count(-1) > 1:
        raise UnsizableModelError(f"target_shape {target!r} is not a shape")
    out: list[int | None] = list(target)
    if -1 in target:
        total = None if None in shape[1:] else math.prod(d or 0 for d in shape[1:])
        out[target.index(-1)] = None if total is None else total // -math.prod(target)
    return (shape[0], *out)


def _permute(cfg: dict[str, Any], inputs: list[Shape]) -> Shape:
    shape = _one(inputs, "Permute")
    dims = cfg.get("dims")
    if not isinstance(dims, list) or sorted(dims) != list(range(1, len(shape))):
        raise UnsizableModelError(f"dims {dims!r} do not permute shape {shape}")
    return (shape[0], *(shape[d] for d in dims))


def _repeat(cfg: dict[str, Any], inputs: list[Shape]) -> Shape:
    shape = _one(inputs, "RepeatVector")
    _rank(shape, 2, "RepeatVector")
    return (shape[0], _positive(cfg, "n"), shape[1])


def _pool(rank: int) -> Callable[[dict[str, Any], list[Shape]], Shape]:
    def out(cfg: dict[str, Any], inputs: list[Shape]) -> Shape:
        shape = _one(inputs, "a pooling layer")
        _rank(shape, rank + 2, f"{rank}D pooling")
        pool = _ints(cfg, "pool_size", rank, 2)
        strides = pool if cfg.get("strides") is None else _ints(cfg, "strides", rank)
        padding, last = _padding(cfg), _channels_last(cfg)
        dims, ch = _spatial(shape, last)
        new = tuple(_window(n, k, s, 1, padding)
                    for n, k, s in zip(dims, pool, strides, strict=True))
        return _with_spatial(shape[0], new, ch, last)
    return out


def _global_pool(rank: int) -> Callable[[dict[str, Any], list[Shape]], Shape]:
    def out(cfg: dict[str, Any], inputs: list[Shape]) -> Shape:
        shape = _one(inputs, "a global pooling layer")
        _rank(shape, rank + 2, f"{rank}D global pooling")
        last = _channels_last(cfg)
        _, ch = _spatial(shape, last)
        if cfg.get("keepdims") is True:
            return _with_spatial(shape[0], (1,) * rank, ch, last)
        return (shape[0], ch)
    return out


def _concatenate(cfg: dict[str, Any], inputs: list[Shape]) -> Shape:
    if len(inputs) < 2 or len({len(s) for s in inputs}) != 1:
        raise UnsizableModelError("Concatenate needs two or more inputs of one rank")
    axis = _axes(cfg, inputs[0])[0]
    sizes = [s[axis] for s in inputs]
    total = None if None in sizes else sum(d for d in sizes if d is not None)
    return inputs[0][:axis] + (total,) + inputs[0][axis + 1:]


def _broadcast(cfg: dict[str, Any], inputs: list[Shape]) -> Shape:
    if len(inputs) < 2:
        raise UnsizableModelError("a merge layer needs two or more inputs")
    rank = max(len(s) for s in inputs)
    out: list[int | None] = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in inputs if i - rank + len(s) >= 0}
        known = {d for d in dims if d not in (None, 1)}
        if len(known) > 1:
            raise UnsizableModelError(f"merge inputs {inputs} do not broadcast")
        out.append(known.pop() if known else (None if None in dims else 1))
    return tuple(out)


WEIGHTLESS: dict[str, Callable[[dict[str, Any], list[Shape]], Shape]] = {
    **dict.fromkeys(
        ["Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
         "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
         "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Identity", "Masking",
         "Rescaling", "UnitNormalization"], _same),
    "Flatten": _flatten, "Reshape": _reshape, "Permute": _permute, "RepeatVector": _repeat,
    "MaxPooling1D": _pool(1), "MaxPooling2D": _pool(2), "MaxPooling3D": _pool(3),
    "AveragePooling1D": _pool(1), "AveragePooling2D": _pool(2), "AveragePooling3D": _pool(3),
    "GlobalMaxPooling1D": _global_pool(1), "GlobalMaxPooling2D": _global_pool(2),
    "GlobalMaxPooling3D": _global_pool(3), "GlobalAveragePooling1D": _global_pool(1),
    "GlobalAveragePooling2D": _global_pool(2), "GlobalAveragePooling3D": _global_pool(3),
    "Concatenate": _concatenate,
    **dict.fromkeys(["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"],
                    _broadcast),
}

# Every layer class a model file may contain (keras_model refuses any other keras.layers
# object): what gridd can size, plus InputLayer and the Bidirectional wrapper.
LAYER_KINDS = frozenset(WEIGHTED) | frozenset(WEIGHTLESS) | {"InputLayer", "Bidirectional"}


# -- walking models -------------------------------------------------------------------------


def _tensors(node: Any) -> Iterator[list[Any]]:
    """keras_history of every KerasTensor in a node's args, in positional order."""
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            history = _config(node).get("keras_history")
            if not isinstance(history, list) or len(history) != 3:
                raise UnsizableModelError(f"keras_history {history!r} is malformed")
            yield history
        else:
            for value in node.values():
                yield from _tensors(value)
    elif isinstance(node, list):
        for value in node:
            yield from _tensors(value)


def _refs(value: Any, what: str) -> list[tuple[str, int, int]]:
    """input_layers / output_layers: one [name, node, tensor] or a list of them."""
    items = value if isinstance(value, list) and value and isinstance(value[0], list) \
        else [value]
    refs = []
    for item in items:
        if (not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str)
                or any(isinstance(i, bool) or not isinstance(i, int) for i in item[1:])):
            raise UnsizableModelError(f"{what} entry {item!r} is malformed")
        refs.append((item[0], item[1], item[2]))
    return refs


def _input_shape(cfg: dict[str, Any]) -> Shape:
    shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
    if shape is None and isinstance(cfg.get("shape"), list):
        shape = [None, *cfg["shape"]]
    return _shape(shape, "InputLayer batch_shape")


class _Counter:
    """Sizes layers and models, counting every layer entry against MAX_LAYERS."""

    def __init__(self) -> None:
        self.layers = 0

    def model(self, entry: dict[str, Any], inputs: list[Shape] | None,
              depth: int) -> tuple[_Tally, list[Shape]]:
        if depth > MAX_DEPTH:
            raise UnsizableModelError(f"models are nested more than {MAX_DEPTH} deep")
        cfg = _config(entry)
        layers = cfg.get("layers")
        if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise UnsizableModelError("a model config has no list of layers")
        self.layers += len(layers)
        if self.layers > MAX_LAYERS:
            raise UnsizableModelError(f"the model has more than {MAX_LAYERS} layers (a "
                                      "nested model counts each time it is sized)")
        if entry.get("class_name") == "Sequential":
            return self._sequential(entry, cfg, layers, inputs, depth)
        return self._functional(cfg, layers, inputs, depth)

    def layer(self, entry: dict[str, Any], inputs: list[Shape] | None,
              depth: int) -> tuple[_Tally, list[Shape]]:
        """Size one layer on its chained inputs (None: not in the graph) and its build_config;
        the larger count wins, the outputs follow the chained inputs."""
        kind = entry.get("class_name")
        if kind in ("Sequential", "Functional"):
            return self.model(entry, inputs, depth + 1)
        if kind == "InputLayer":
            return _Tally(), [_input_shape(_config(entry))]
        if kind not in LAYER_KINDS or entry.get("module") != "keras.layers":
            raise UnsizableModelError(
                f"gridd cannot size {kind!r} (module {entry.get('module')!r}) from its config, "
                "so it does not load it "
                f"(supported: {', '.join(sorted(LAYER_KINDS))})")
        cfg = _config(entry)
        built = _build_shapes(entry)
        best, outs = _Tally(), []
        for candidate in (inputs, built):
            tally, out = self._sized(kind, cfg, candidate, depth)
            if tally.params > best.params:
                best = tally
            if candidate is inputs:
                outs = out
        return best, outs

    def _sized(self, kind: str, cfg: dict[str, Any], inputs: list[Shape] | None,
               depth: int) -> tuple[_Tally, list[Shape]]:
        if kind == "Bidirectional":
            return self._bidirectional(cfg, inputs, depth)
        if kind in WEIGHTLESS:
            return _Tally(), [] if inputs is None else [WEIGHTLESS[kind](cfg, inputs)]
        shape = None if inputs is None else _one(inputs, kind)
        params, out = WEIGHTED[kind](cfg, shape)
        return _Tally(params, params * _itemsize(cfg)), [] if out is None else [out]

    def _bidirectional(self, cfg: dict[str, Any], inputs: list[Shape] | None,
                       depth: int) -> tuple[_Tally, list[Shape]]:
        forward = cfg.get("layer")
        backward = cfg.get("backward_layer") or forward  # absent: a copy of the forward one
        mode = cfg.get("merge_mode", "concat")
        if not isinstance(forward, dict) or not isinstance(backward, dict) or mode not in (
                "concat", "sum", "mul", "ave"):
            raise UnsizableModelError("a Bidirectional layer needs a layer and a merge_mode")
        tally = _Tally()
        outs: list[Shape] = []
        for inner in (forward, backward):
            if inner.get("class_name") not in ("SimpleRNN", "LSTM", "GRU"):
                raise UnsizableModelError("Bidirectional wraps SimpleRNN, LSTM or GRU only")
            t, outs = self.layer(inner, inputs, depth)
            tally.add(t)
        if outs and mode == "concat":
            last = outs[0][-1]
            outs = [outs[0][:-1] + (None if last is None else 2 * last,)]
        return tally, outs

    def _sequential(self, entry: dict[str, Any], cfg: dict[str, Any],
                    layers: list[dict[str, Any]], inputs: list[Shape] | None,
                    depth: int) -> tuple[_Tally, list[Shape]]:
        """Chained from every input shape the config offers (the largest count wins); an
        input shape must exist, or fit() would build the layers from the data's shape."""
        starts: list[list[Shape] | None] = []
        if layers and layers[0].get("class_name") == "InputLayer":
            starts.append(None)  # the InputLayer provides the shape
        else:
            if cfg.get("build_input_shape") is not None:
                starts.append([_shape(cfg["build_input_shape"], "build_input_shape")])
            starts.append(_build_shapes(entry))
            starts.append(inputs)
            starts = [s for s in starts if s is not None]
            if not starts:
                raise UnsizableModelError(
                    "the Sequential model declares no input shape (start it with keras.Input "
                    "so the worker can size it before building)")
        best, outs = _Tally(), None
        for start in starts:
            tally, out = _Tally(), start
            for layer in layers:
                t, shapes = self.layer(layer, out, depth)
                out = shapes or None
                tally.add(t)
            best = max(best, tally, key=lambda x: x.params)
            outs = out if outs is None else outs
        return best, outs or []

    def _functional(self, cfg: dict[str, Any], layers: list[dict[str, Any]],
                    inputs: list[Shape] | None, depth: int) -> tuple[_Tally, list[Shape]]:
        """Its own graph, and (nested) the graph on the caller's shapes, which must agree:
        Keras hands the first outer call the outputs of the model's own graph."""
        names = [e.get("name", _config(e).get("name")) for e in layers]
        if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise UnsizableModelError("layer names in a Functional model are missing or repeat")
        tally, outs = self._graph(cfg, dict(zip(names, layers, strict=True)), None, depth)
        if inputs is not None:
            called, called_outs = self._graph(cfg, dict(zip(names, layers, strict=True)),
                                              inputs, depth)
            if [s[1:] for s in called_outs] != [s[1:] for s in outs]:
                raise UnsizableModelError(
                    f"a nested model is called on inputs {inputs} that change its output "
                    f"shapes {outs}")
            tally = max(tally, called, key=lambda x: x.params)
        return tally, outs

    def _graph(self, cfg: dict[str, Any], entries: dict[str, dict[str, Any]],
               inputs: list[Shape] | None, depth: int) -> tuple[_Tally, list[Shape]]:
        """Run the graph on shapes: each node waits for the outputs it names."""
        given: dict[str, Shape] = {}
        if inputs is not None:
            refs = _refs(cfg.get("input_layers"), "input_layers")
            if len(refs) != len(inputs):
                raise UnsizableModelError("a nested model is called with the wrong inputs")
            given = {ref[0]: shape for ref, shape in zip(refs, inputs, strict=True)}
        produced: dict[tuple[str, int], list[Shape]] = {}
        pending: dict[str, list[Any]] = {}
        tally = _Tally()
        for name, entry in entries.items():
            if entry.get("class_name") == "InputLayer":
                produced[(name, 0)] = [given.get(name) or _input_shape(_config(entry))]
                continue
            nodes = entry.get("inbound_nodes") or []
            if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
                raise UnsizableModelError(f"inbound_nodes of {name!r} are not Keras 3 nodes")
            pending[name] = list(nodes)
            if not nodes:  # outside the graph: only its build_config can build it
                tally.add(self.layer(entry, None, depth)[0])
        calls: dict[str, int] = {}
        progress = True
        while progress and any(pending.values()):
            progress = False
            for name, nodes in pending.items():
                while nodes:
                    history = list(_tensors(nodes[0].get("args", [])))
                    if not all((h[0], h[1]) in produced for h in history):
                        break
                    try:
                        shapes = [produced[(h[0], h[1])][h[2]] for h in history]
                    except (IndexError, TypeError):
                        raise UnsizableModelError(f"{name!r} names a tensor that does not "
                                                  "exist") from None
                    t, out = self.layer(entries[name], shapes, depth)
                    if name not in calls:
                        tally.add(t)  # a shared layer's weights are made once
                    calls[name] = calls.get(name, -1) + 1
                    produced[(name, calls[name])] = out
                    nodes.pop(0)
                    progress = True
        if any(pending.values()):
            raise UnsizableModelError("the layer graph has inputs that no layer produces")
        outs = []
        for name, node, index in _refs(cfg.get("output_layers"), "output_layers"):
            try:
                outs.append(produced[(name, node)][index])
            except (KeyError, IndexError):
                raise UnsizableModelError(f"output {name!r} is not produced") from None
        return tally, outs


# -- the weights file ------------------------------------------------------------------------


def check_weights_entry(zf: zipfile.ZipFile, name: str, budget: Budget) -> None:
    """Refuse a weights entry that declares more bytes than `budget` accounts for.

    Two sizes are declared before anything is read: the zip entry's uncompressed size, and
    inside the HDF5 file each dataset's shape (a chunked, compressed dataset stores next to
    nothing and expands on read). Both must fit the budget plus FILE_SLACK.
    """
    limit = budget.bytes + FILE_SLACK
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise UnsizableModelError(
            f"{name} declares {info.file_size} bytes, but a model of {budget.params} "
            f"parameters needs at most {limit}")
    if info.compress_type != zipfile.ZIP_STORED:  # seeking in a deflated entry re-inflates it
        raise UnsizableModelError(f"{name} is compressed; Keras stores it uncompressed")
    import h5py

    declared = 0

    def visit(path: str, obj: Any) -> None:
        nonlocal declared
        if isinstance(obj, h5py.Dataset):
            if obj.dtype.kind == "O" or obj.external or obj.is_virtual:
                raise UnsizableModelError(f"{name} holds a dataset {path!r} Keras never writes")
            declared += math.prod(obj.shape or ()) * obj.dtype.itemsize
            if declared > limit:
                raise UnsizableModelError(
                    f"{name} declares datasets of more than {limit} bytes, over what a model "
                    f"of {budget.params} parameters needs")

    try:
        with zf.open(info) as raw, h5py.File(raw, "r") as h5:
            h5.visititems(visit)
    except UnsizableModelError:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, ValueError... for a bad file
        raise UnsizableModelError(f"{name} is not a readable HDF5 file: {e}") from None

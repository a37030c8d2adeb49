"""The training recipe stored with a tangle genesis or a compute job.

A recipe arrives from the network, so it is validated field by field (with caps) and
converts only to and from plain primitives that msgpack can carry.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any

#: Builtin architectures every peer can build without receiving code or a .keras file.
BUILTIN_ARCHITECTURES = ("digits_mlp", "softmax", "mlp")
#: "keras" means the architecture travels as a .keras file next to the recipe.
ARCHITECTURES = (*BUILTIN_ARCHITECTURES, "keras")
OPTIMIZERS = ("sgd", "adam")
LOSSES = ("sparse_categorical_crossentropy",)
METRICS = ("accuracy",)

# Caps: a recipe from a stranger must not be able to ask for absurd resources.
MAX_CLASSES = 100_000
MAX_INPUT_SIZE = 100_000_000
MAX_INPUT_RANK = 8
MAX_HIDDEN_LAYERS = 16
MAX_LAYER_WIDTH = 65_536
MAX_BATCH_SIZE = 65_536
MAX_LOCAL_EPOCHS = 1_000
MAX_LEARNING_RATE = 100.0

DIGITS_HIDDEN = (32,)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Recipe:
    """How a model is built and trained; identical on every peer of a tangle.

    A tangle's genesis stores its recipe, and every peer trains with exactly this and
    nothing else (a compute job's recipe likewise), so whatever it cannot say cannot be
    part of training. Fields:

    * ``architecture``: a builtin one (below), or ``"keras"`` when the model travels as a
      .keras file next to the recipe.
    * ``input_shape``: the shape of one sample, without the batch dimension, e.g. ``(64,)``
      or ``(28, 28)``.
    * ``classes``: the number of classes; labels are class indices in ``[0, classes)``
      and the model outputs one probability per class.
    * ``optimizer``: ``"sgd"`` or ``"adam"``, built by peers as Keras' ``SGD`` / ``Adam``
      with their default settings except the learning rate (default ``"sgd"``).
    * ``learning_rate``: a constant learning rate in (0, 100] (default 0.1).
    * ``batch_size``: samples per gradient step of local training (default 16).
    * ``local_epochs``: epochs a peer trains on its data per training step (default 1).
    * ``loss``: ``"sparse_categorical_crossentropy"`` on probabilities (the only one).
    * ``metric``: ``"accuracy"`` (the only one): how peers compare models.
    * ``hidden``: widths of the relu layers of ``mlp``; empty for the others.

    Builtin architectures: ``digits_mlp`` is Input(64) → Dense(32, relu) → Dense(10,
    softmax); ``softmax`` is Input(n) → Dense(classes, softmax); ``mlp`` uses ``hidden`` as
    the widths of its relu layers. Inputs of rank > 1 are flattened first (no weights).
    ``gridd.models.keras_model.recipe_from_model`` derives a ``"keras"`` recipe from a
    compiled Keras model and refuses compile settings that no field here can carry.
    """

    architecture: str
    input_shape: tuple[int, ...]
    classes: int
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    batch_size: int = 16
    local_epochs: int = 1
    loss: str = "sparse_categorical_crossentropy"
    metric: str = "accuracy"
    hidden: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Lists are accepted for convenience; the stored value is always a tuple so the
        # recipe stays hashable and compares equal after a msgpack round trip.
        for name in ("input_shape", "hidden"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if _is_int(self.learning_rate):
            object.__setattr__(self, "learning_rate", float(self.learning_rate))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"recipe.architecture: {self.architecture!r} is not one of {ARCHITECTURES}"
            )
        self._validate_shape("input_shape", self.input_shape, MAX_INPUT_RANK, allow_empty=False)
        if math.prod(self.input_shape) > MAX_INPUT_SIZE:
            raise ValueError(
                f"recipe.input_shape: {self.input_shape} has more than {MAX_INPUT_SIZE} values"
            )
        if not _is_int(self.classes) or not 2 <= self.classes <= MAX_CLASSES:
            raise ValueError(
                f"recipe.classes: must be an int in [2, {MAX_CLASSES}], got {self.classes!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe.optimizer: {self.optimizer!r} is not one of {OPTIMIZERS}")
        lr = self.learning_rate
        if not _is_real(lr) or not math.isfinite(lr) or not 0 < lr <= MAX_LEARNING_RATE:
            raise ValueError(
                "recipe.learning_rate: must be a finite number in "
                f"(0, {MAX_LEARNING_RATE}], got {lr!r}"
            )
        if not _is_int(self.batch_size) or not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(
                f"recipe.batch_size: must be an int in [1, {MAX_BATCH_SIZE}], "
                f"got {self.batch_size!r}"
            )
        if not _is_int(self.local_epochs) or not 1 <= self.local_epochs <= MAX_LOCAL_EPOCHS:
            raise ValueError(
                f"recipe.local_epochs: must be an int in [1, {MAX_LOCAL_EPOCHS}], "
                f"got {self.local_epochs!r}"
            )
        if self.loss not in LOSSES:
            raise ValueError(f"recipe.loss: {self.loss!r} is not one of {LOSSES}")
        if self.metric not in METRICS:
            raise ValueError(f"recipe.metric: {self.metric!r} is not one of {METRICS}")
        self._validate_shape(
            "hidden", self.hidden, MAX_HIDDEN_LAYERS, allow_empty=True, max_dim=MAX_LAYER_WIDTH
        )
        self._validate_architecture()

    @staticmethod
    def _validate_shape(
        name: str, value: Any, max_len: int, *, allow_empty: bool, max_dim: int | None = None
    ) -> None:
        if not isinstance(value, tuple):
            raise ValueError(f"recipe.{name}: must be a tuple of ints, got {type(value).__name__}")
        if not value and not allow_empty:
            raise ValueError(f"recipe.{name}: must not be empty")
        if len(value) > max_len:
            raise ValueError(f"recipe.{name}: at most {max_len} entries, got {len(value)}")
        for dim in value:
            if not _is_int(dim) or dim < 1 or (max_dim is not None and dim > max_dim):
                limit = f" and <= {max_dim}" if max_dim is not None else ""
                raise ValueError(f"recipe.{name}: entries must be ints >= 1{limit}, got {value!r}")

    def _validate_architecture(self) -> None:
        if self.architecture == "digits_mlp":
            if self.input_shape != (64,):
                raise ValueError(
                    f"recipe.input_shape: digits_mlp takes (64,), got {self.input_shape}"
                )
            if self.classes != 10:
                raise ValueError(f"recipe.classes: digits_mlp has 10 classes, got {self.classes}")
            if self.hidden not in ((), DIGITS_HIDDEN):
                raise ValueError(
                    f"recipe.hidden: digits_mlp is fixed at {DIGITS_HIDDEN}; use 'mlp' for others"
                )
        elif self.architecture == "mlp" and not self.hidden:
            raise ValueError("recipe.hidden: 'mlp' needs at least one hidden layer width")
        elif self.architecture in ("softmax", "keras") and self.hidden:
            raise ValueError(
                f"recipe.hidden: must be empty for {self.architecture!r}, got {self.hidden}"
            )

    def hidden_layers(self) -> tuple[int, ...]:
        """Widths of the relu layers of a builtin architecture (empty for softmax/keras)."""
        if self.architecture == "digits_mlp":
            return DIGITS_HIDDEN
        return self.hidden

    def to_dict(self) -> dict[str, Any]:
        """Plain primitives (tuples become lists), ready for msgpack."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Recipe:
        """Build and validate a recipe from untrusted primitives.

        Unknown, missing or mistyped fields raise ValueError naming them.
        """
        if not isinstance(data, dict):
            raise ValueError(f"recipe: expected a dict, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"recipe: unknown field(s) {unknown}")
        required = [name for name, f in known.items() if f.default is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"recipe: missing field(s) {missing}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            kwargs[name] = _coerce_field(name, value)
        return cls(**kwargs)


_STR_FIELDS = ("architecture", "optimizer", "loss", "metric")
_INT_FIELDS = ("classes", "batch_size", "local_epochs")
_SHAPE_FIELDS = ("input_shape", "hidden")


def _coerce_field(name: str, value: Any) -> Any:
    """Type-check one field from the wire; values are range-checked later by validate()."""
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise ValueError(f"recipe.{name}: expected str, got {type(value).__name__}")
        return value
    if name in _INT_FIELDS:
        if not _is_int(value):
            raise ValueError(f"recipe.{name}: expected int, got {type(value).__name__}")
        return value
    if name in _SHAPE_FIELDS:
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
            raise ValueError(f"recipe.{name}: expected a list of ints, got {value!r}")
        return tuple(value)
    if name == "learning_rate":
        if not _is_real(value):
            raise ValueError(f"recipe.learning_rate: expected a number, got {type(value).__name__}")
        return float(value)
    raise AssertionError(f"unhandled recipe field {name}")  # fields() and the tables above disagree

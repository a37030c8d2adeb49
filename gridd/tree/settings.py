"""Settings of a tree-mode peer: configs/tree.yaml < environment < CLI flags.

The setting names are the IPFS Learning Tangle's (TRAINING_INTERVAL, ACTIVE_QUOTA, ...), so
its users recognise them; they are the upper-case form of the TreeSettings fields. Every
value is validated when the peer starts and a bad one raises ValueError naming the setting
and where it came from, because a typo found an hour into a run costs that hour.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tree.yaml"

MODELS = ("auto", "tf", "no_tf")
SELECTORS = ("random_walk", "accuracy", "uniform")
BACKENDS = ("ipfs", "memory")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# accuracy 3.0: on the digits benchmark it mixes non-IID peers better than 10 (which keeps
# each peer on models that suit its own labels) and still follows the better branch.
DEFAULT_ALPHA = {"random_walk": 0.001, "accuracy": 3.0, "uniform": 0.0}


@dataclass(frozen=True)
class TreeSettings:
    """What a tree peer needs to know besides its genesis and data (see configs/tree.yaml)."""

    training_interval: float = 10.0
    active_quota: float = 1.0
    num_of_tips: int = 8
    num_of_sampling_round: int = 35
    model: str = "auto"
    timeout: float = 30.0
    logger: str = "stderr"
    logging_level: str = "INFO"
    storage: str = "ipfs"
    message_broker: str = "ipfs"
    announce_interval: float = 30.0
    tip_selector: str = "accuracy"
    selector_alpha: float | None = None
    reference_top: int = 8
    reference_window: int = 25
    min_improvement: float = 0.0
    max_pending: int = 10_000
    weights_cache: int = 32
    sample_weight_cap: float = 4.0
    vet_ratio: float = 0.5
    vet_tolerance: float = 1.0
    max_deviation: float = 1.0
    momentum: float = 0.9
    vet_own_accuracy: float = 0.0
    retention_window: int = 30
    retention_own: int = 10
    retention_interval: float = 60.0
    log_compact_bytes: int = 16 * 1024 * 1024
    bootstrap: str = ""  # multiaddrs to keep connected, comma/space separated (GRIDD_BOOTSTRAP)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def alpha(self) -> float:
        """The walk bias actually used: selector_alpha or the selector's default."""
        if self.selector_alpha is not None:
            return float(self.selector_alpha)
        return DEFAULT_ALPHA[self.tip_selector]

    @property
    def prefer(self) -> str:
        """The build_model preference for MODEL (no_tf -> numpy, tf -> keras)."""
        return {"auto": "auto", "tf": "keras", "no_tf": "numpy"}[self.model]

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (upper-case, as users set it)."""
        _positive("TRAINING_INTERVAL", self.training_interval, allow_zero=True)
        _fraction("ACTIVE_QUOTA", self.active_quota)
        _int_range("NUM_OF_TIPS", self.num_of_tips, 1, 8)
        _int_range("NUM_OF_SAMPLING_ROUND", self.num_of_sampling_round, 1, 10_000)
        _choice("MODEL", self.model, MODELS)
        _positive("TIMEOUT", self.timeout)
        if not isinstance(self.logger, str) or not (
            self.logger in ("stderr", "stdout", "none")
            or (self.logger.startswith("file:") and len(self.logger) > 5)
        ):
            raise ValueError(
                f"LOGGER: expected stderr, stdout, none or file:<path>, got {self.logger!r}"
            )
        _choice("LOGGING_LEVEL", self.logging_level, LEVELS)
        _choice("STORAGE", self.storage, BACKENDS)
        _choice("MESSAGE_BROKER", self.message_broker, BACKENDS)
        if self.storage != self.message_broker:
            raise ValueError(
                f"STORAGE: {self.storage!r} cannot be combined with MESSAGE_BROKER "
                f"{self.message_broker!r}; use ipfs for both (memory only inside `gridd lab`)"
            )
        _positive("ANNOUNCE_INTERVAL", self.announce_interval)
        _choice("TIP_SELECTOR", self.tip_selector, SELECTORS)
        if self.selector_alpha is not None:
            _positive("SELECTOR_ALPHA", self.selector_alpha, allow_zero=True)
        _int_range("REFERENCE_TOP", self.reference_top, 1, 64)
        _int_range("REFERENCE_WINDOW", self.reference_window, 1, 10_000)
        _positive("MIN_IMPROVEMENT", self.min_improvement, allow_zero=True)
        _int_range("MAX_PENDING", self.max_pending, 0, 10_000_000)
        _int_range("WEIGHTS_CACHE", self.weights_cache, 1, 100_000)
        _positive("SAMPLE_WEIGHT_CAP", self.sample_weight_cap, allow_zero=True)
        _fraction("VET_RATIO", self.vet_ratio)
        _positive("VET_TOLERANCE", self.vet_tolerance, allow_zero=True)
        _positive("MAX_DEVIATION", self.max_deviation)
        _fraction("VET_OWN_ACCURACY", self.vet_own_accuracy)
        if not (_is_real(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"MOMENTUM: expected a number in [0, 1), got {self.momentum!r}")
        _int_range("RETENTION_WINDOW", self.retention_window, 0, 1_000_000)
        _int_range("RETENTION_OWN", self.retention_own, -1, 1_000_000)
        _positive("RETENTION_INTERVAL", self.retention_interval)
        _int_range("LOG_COMPACT_BYTES", self.log_compact_bytes, 0, 1 << 40)
        from gridd.ipfs.bootstrap import parse_bootstrap

        try:
            parse_bootstrap([self.bootstrap])
        except ValueError as e:
            raise ValueError(f"BOOTSTRAP: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = _is_real(value) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}")


def _fraction(name: str, value: Any) -> None:
    if not (_is_real(value) and 0 <= value <= 1):
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")


def _int_range(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")


# -- loading ----------------------------------------------------------------------------------

_FIELDS = {f.name: f for f in fields(TreeSettings)}
SETTING_NAMES = tuple(name.upper() for name in _FIELDS)
"""Upper-case names: the environment variables and the keys of configs/tree.yaml."""


_WORDS = {"retention_window": {"off": 0, "false": 0}, "retention_own": {"all": -1}}
"""Words some integer settings take: RETENTION_WINDOW off (YAML reads it as false),
RETENTION_OWN all."""


def _convert(name: str, raw: Any, source: str) -> Any:
    """Turn a file/env/flag value into the field's type; strings are parsed."""
    field_type = str(_FIELDS[name].type)
    upper = name.upper()
    words = _WORDS.get(name, {})
    word = str(raw).strip().lower() if isinstance(raw, (str, bool)) else None
    if word is not None and word in words:
        return words[word]
    if name == "bootstrap" and isinstance(raw, (list, tuple)):  # YAML list of multiaddrs
        return " ".join(str(a) for a in raw)
    if raw is None:
        if "None" in field_type:
            return None
        raise ValueError(f"{upper}: a value is required ({source})")
    if isinstance(raw, str):
        text = raw.strip()
        if "None" in field_type and text.lower() in ("", "null", "none"):
            return None
        try:
            if field_type.startswith("int"):
                return int(text)
            if field_type.startswith("float"):
                value = float(text)
                return value
        except ValueError:
            kind = "an integer" if field_type.startswith("int") else "a number"
            raise ValueError(f"{upper}: expected {kind}, got {raw!r} ({source})") from None
        if name == "logging_level":
            return text.upper()
        if name in ("model", "storage", "message_broker", "tip_selector"):
            return text.lower()
        return text
    if field_type.startswith("float") and _is_real(raw):
        return float(raw)
    return raw


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ValueError(f"config file {path}: cannot read it: {e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"config file {path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping of settings")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).lower()
        if name not in _FIELDS:
            raise ValueError(
                f"{key}: unknown setting in {path} (known: {', '.join(SETTING_NAMES)})"
            )
        out[name] = _convert(name, value, f"from {path}")
    return out


def load_tree_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TreeSettings:
    """Defaults (configs/tree.yaml, or the dataclass defaults) < config_file < env < overrides.

    `overrides` use field names (training_interval) or setting names (TRAINING_INTERVAL);
    None values are ignored so unset CLI flags do not mask the environment.
    Raises ValueError naming the bad setting and its source.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if DEFAULT_CONFIG.is_file():
        values.update(_read_file(DEFAULT_CONFIG))
    if config_file is not None:
        values.update(_read_file(Path(config_file)))
    for name in _FIELDS:
        upper = name.upper()
        if upper in env:
            values[name] = _convert(name, env[upper], f"from environment variable {upper}")
    for key, value in (overrides or {}).items():
        name = str(key).lower()
        if name not in _FIELDS:
            raise ValueError(f"{key}: unknown setting (known: {', '.join(SETTING_NAMES)})")
        if value is not None:
            values[name] = _convert(name, value, "from the command line")
    return TreeSettings(**values)

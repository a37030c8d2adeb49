"""Tree settings: configs/tree.yaml < environment < CLI flags; bad values name the setting."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from gridd.tree.settings import DEFAULT_CONFIG, SETTING_NAMES, TreeSettings, load_tree_settings


def test_tree_yaml_lists_every_setting_with_the_dataclass_default() -> None:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert sorted(data) == sorted(SETTING_NAMES)
    defaults = TreeSettings()
    for f in fields(TreeSettings):
        assert data[f.name.upper()] == getattr(defaults, f.name), f.name


def test_precedence_file_then_env_then_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "tree.yaml"
    cfg.write_text("TRAINING_INTERVAL: 3\nNUM_OF_TIPS: 3\nACTIVE_QUOTA: 0.25\n")
    env = {"NUM_OF_TIPS": "4", "ACTIVE_QUOTA": "0.5", "MODEL": "NO_TF"}
    s = load_tree_settings(cfg, env, {"active_quota": "0.75", "timeout": None})
    assert s.training_interval == 3.0  # file
    assert s.num_of_tips == 4  # env beats file
    assert s.active_quota == 0.75  # flag beats env
    assert s.model == "no_tf" and s.prefer == "numpy"
    assert s.timeout == TreeSettings().timeout  # an unset flag does not mask anything


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"TRAINING_INTERVAL": "soon"}, "TRAINING_INTERVAL"),
        ({"ACTIVE_QUOTA": "1.5"}, "ACTIVE_QUOTA"),
        ({"NUM_OF_TIPS": "0"}, "NUM_OF_TIPS"),
        ({"NUM_OF_SAMPLING_ROUND": "2.5"}, "NUM_OF_SAMPLING_ROUND"),
        ({"MODEL": "pytorch"}, "MODEL"),
        ({"TIMEOUT": "-1"}, "TIMEOUT"),
        ({"LOGGER": "syslog"}, "LOGGER"),
        ({"LOGGING_LEVEL": "chatty"}, "LOGGING_LEVEL"),
        ({"STORAGE": "s3"}, "STORAGE"),
        ({"MESSAGE_BROKER": "memory"}, "STORAGE"),  # memory broker with ipfs storage
        ({"TIP_SELECTOR": "best"}, "TIP_SELECTOR"),
        ({"NUM_OF_TIPS": "9"}, "NUM_OF_TIPS"),  # a transaction approves at most 8
        ({"MOMENTUM": "1"}, "MOMENTUM"),  # 1 would never forget a step: diverges
        ({"MOMENTUM": "-0.1"}, "MOMENTUM"),
        ({"VET_TOLERANCE": "nan"}, "VET_TOLERANCE"),
        ({"MAX_DEVIATION": "0"}, "MAX_DEVIATION"),
        ({"VET_OWN_ACCURACY": "2"}, "VET_OWN_ACCURACY"),
    ],
)
def test_invalid_values_are_refused_with_the_setting_name(env: dict[str, str], name: str
                                                           ) -> None:
    with pytest.raises(ValueError, match=f"^{name}:"):
        load_tree_settings(env=env)


def test_bad_file_key_and_bad_flag_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "tree.yaml"
    cfg.write_text("TRAINING_INTERVALL: 3\n")
    with pytest.raises(ValueError, match="TRAINING_INTERVALL: unknown setting"):
        load_tree_settings(cfg, env={})
    with pytest.raises(ValueError, match="NUM_OF_TIPS: expected an integer.*command line"):
        load_tree_settings(env={}, overrides={"NUM_OF_TIPS": "two"})


def test_unrelated_environment_is_ignored() -> None:
    s = load_tree_settings(env={"PATH": "/bin", "HOME": "/root"})
    assert s == TreeSettings()

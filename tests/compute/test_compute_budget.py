"""The compute trainer sizes a job's model before Keras builds it (in-memory store, real Keras).

A bomb job is refused as too_many_params (refused=True: counted in jobs_refused like the
other refusals), and the worker's max_params setting is what the trainer enforces.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from compute_helpers import mlp

from gridd.compute.cli import compute_worker, load_settings
from gridd.compute.jobs import JobContext, JobError, JobSpec
from gridd.compute.settings import ComputeSettings
from gridd.compute.trainer import KerasTrainer
from gridd.metrics import ComputeMetrics
from gridd.models import save_keras_bytes
from gridd.transport import MemoryNetwork

pytestmark = pytest.mark.tf

BOMB_PARAMS = 16384 * 8192 + 8192


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _context(model: bytes, reports: list[tuple[str, dict[str, Any]]]) -> JobContext:
    store = MemoryNetwork().store()
    rng = np.random.default_rng(0)
    data = {"x": store.put(_npy(rng.random((32, 64), dtype=np.float32))),
            "y": store.put(_npy(rng.integers(0, 10, 32)))}
    spec = JobSpec(job="j1", attempt=0, owner="client", model=store.put(model), data=data,
                   fit={"epochs": 1, "batch_size": 16}, bytes=len(model))
    return JobContext(spec=spec, store=store, metrics=ComputeMetrics(), max_bytes=2**24,
                      deadline=time.monotonic() + 120,
                      report=lambda kind, body: reports.append((kind, body)))


def _bomb() -> bytes:
    """A compiled 8 -> 4 Dense model whose config.json is edited to declare 16384 -> 8192."""
    import keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile(optimizer="adam", loss="mse")
    src = zipfile.ZipFile(io.BytesIO(save_keras_bytes(model)))
    config = json.loads(src.read("config.json"))
    config["build_config"]["input_shape"] = [None, 16384]
    inp, dense = config["config"]["layers"]
    inp["config"]["batch_shape"] = dense["build_config"]["input_shape"] = [None, 16384]
    dense["config"]["units"] = 8192
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, json.dumps(config) if info.filename == "config.json"
                         else src.read(info))
    return out.getvalue()


def test_worker_setting_defaults_to_fifty_million() -> None:
    assert ComputeSettings().max_params == 50_000_000
    with pytest.raises(ValueError, match="max_params"):
        ComputeSettings(max_params=0).validate()


def test_bomb_job_is_refused_as_too_many_params_before_training() -> None:
    reports: list[tuple[str, dict[str, Any]]] = []
    trainer = KerasTrainer(ComputeSettings().max_params)
    with pytest.raises(JobError) as e:
        trainer.run(_context(_bomb(), reports))
    assert (e.value.reason, e.value.refused) == ("too_many_params", True)
    assert f"{BOMB_PARAMS} parameters, over the limit of 50000000" in e.value.message
    assert ("compute.beat", {"state": "training"}) not in reports


def test_the_limit_is_the_trainers_setting() -> None:
    model = save_keras_bytes(mlp(hidden=16))  # 64*16+16 + 16*10+10 = 1210 parameters
    with pytest.raises(JobError, match="1210 parameters, over the limit of 1000") as e:
        KerasTrainer(max_params=1000).run(_context(model, []))
    assert e.value.reason == "too_many_params"
    reports: list[tuple[str, dict[str, Any]]] = []
    result = KerasTrainer(max_params=1210).run(_context(model, reports))
    assert len(result.history["loss"]) == 1
    assert ("compute.beat", {"state": "training"}) in reports


def test_max_params_comes_from_the_file_or_the_flag(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_params: 1000000\n")
    assert load_settings(cfg, {}).max_params == 1_000_000
    assert load_settings(cfg, {"max_params": 5000}).max_params == 5000
    assert "--max-params" in CliRunner().invoke(compute_worker, ["--help"]).output

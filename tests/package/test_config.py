"""Config resolution: defaults < YAML < command line; unknown keys are errors."""

import pytest

from straightflow.config import resolve_config
from straightflow.errors import StraightflowError


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 123\nlr: 0.01\nbeta: .inf\n")
    cfg = resolve_config(str(f), {"lr": "0.002", "grad-clip": "1"})
    assert cfg.steps == 123 and cfg.lr == 0.002 and cfg.grad_clip == 1.0 and cfg.beta == float("inf")


def test_unknown_key_suggests_a_fix(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("stepz: 10\n")
    with pytest.raises(StraightflowError, match="unknown config key 'stepz'.*did you mean 'steps'"):
        resolve_config(str(f))


def test_wrong_type_and_range():
    with pytest.raises(StraightflowError, match="expects int"):
        resolve_config(None, {"steps": "many"})
    with pytest.raises(StraightflowError, match="ema_decay"):
        resolve_config(None, {"ema_decay": 1.5})


def test_invalid_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("steps: [1,\n")
    with pytest.raises(StraightflowError, match="not valid YAML"):
        resolve_config(str(f))


def test_amp_is_checked_before_training():
    with pytest.raises(StraightflowError, match="unknown amp 'fp8'"):
        resolve_config(None, {"amp": "fp8"})
    assert resolve_config(None, {"amp": "bf16", "compile": "true"}).amp == "bf16"

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from core.config import ConfigError, from_dict, load_config, save_yaml, to_dict, with_overrides


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float | None = None


@dataclass(frozen=True)
class Run:
    steps: int = 10
    method: Literal["cpc", "mae"] = "cpc"
    name: str = "x"
    amp: bool = False
    optim: Optim = field(default_factory=Optim)


def test_roundtrip_yaml(tmp_path):
    cfg = Run(steps=3, method="mae", optim=Optim(lr=0.5, clip=1.0))
    assert from_dict(Run, to_dict(cfg)) == cfg
    save_yaml(cfg, tmp_path / "r.yaml")
    assert load_config(Run, tmp_path / "r.yaml") == cfg


def test_unknown_key_raises_with_suggestion(tmp_path):
    (tmp_path / "r.yaml").write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'stepz'.*Did you mean: steps"):
        load_config(Run, tmp_path / "r.yaml")
    with pytest.raises(ConfigError, match="optim.lrr"):
        from_dict(Run, {"optim": {"lrr": 1}})


def test_overrides_typed():
    cfg = with_overrides(Run(), ["steps=7", "optim.lr=3e-4", "optim.betas=[0.8, 0.9]", "amp=true", "optim.clip=null"])
    assert cfg.steps == 7 and cfg.optim.lr == pytest.approx(3e-4) and cfg.optim.betas == (0.8, 0.9)
    assert cfg.amp is True and cfg.optim.clip is None
    with pytest.raises(ConfigError, match="must be an integer"):
        with_overrides(Run(), ["steps=1.5"])
    with pytest.raises(ConfigError, match="must be one of"):
        with_overrides(Run(), ["method=dino"])
    with pytest.raises(ConfigError, match="key=value"):
        with_overrides(Run(), ["steps"])
    with pytest.raises(ConfigError, match="unknown config key"):
        with_overrides(Run(), ["optim.nope=1"])

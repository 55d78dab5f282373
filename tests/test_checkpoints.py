from __future__ import annotations

import pickle

import pytest
import torch

from core.checkpoints import (
    CheckpointError,
    latest_train_state,
    load_train_state,
    load_weights,
    save_train_state,
    save_weights,
)


def test_weights_roundtrip_and_hash(tmp_path):
    sd = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    info = save_weights(tmp_path / "m.safetensors", sd, {"arch": "vit_tiny"}, method="cpc")
    loaded, meta = load_weights(tmp_path / "m.safetensors")
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert meta["config"] == {"arch": "vit_tiny"} and meta["sha256"] == info["sha256"] and meta["method"] == "cpc"
    data = bytearray((tmp_path / "m.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "m.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_weights(tmp_path / "m.safetensors")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refuses_pickle_checkpoint(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"w": Evil()}, f)
    with pytest.raises(CheckpointError, match="refusing"):
        load_weights(path)
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pth")
    assert torch.equal(load_weights(tmp_path / "ok.pth")[0]["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match="unsupported"):
        (tmp_path / "x.pkl").write_bytes(b"x")
        load_weights(tmp_path / "x.pkl")


def test_train_state_roundtrip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    import random

    import numpy as np

    state = {"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(), "np_rng": np.random.get_state(),
             "py_rng": random.getstate(), "epoch": 2}
    for step in (5, 10, 15):
        save_train_state(tmp_path, step, model.state_dict(), state, {"steps": 20})
    d = latest_train_state(tmp_path)
    assert d.name == "step_00000015" and len(list((tmp_path / "checkpoints").glob("step_*"))) == 2
    step, msd, st = load_train_state(d)
    assert step == 15 and torch.equal(msd["weight"], model.weight)
    opt2 = torch.optim.AdamW(model.parameters())
    opt2.load_state_dict(st["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    np.random.set_state(st["np_rng"])
    random.setstate(st["py_rng"])
    assert st["epoch"] == 2 and torch.equal(st["torch_rng"], state["torch_rng"])

"""harness.probe: the frozen-feature protocols through ``harness.evaluate`` on a tiny ViT: cached linear equals the
uncached path, k-NN on features with a known answer, an attentive probe that must learn, a correspondence task
scored without training, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from task_kit import fake_resolve
from torch import nn
from torch.nn import functional as Fn

from core.errors import CpcbenchError
from harness.registries import TASKS
from tasks.base import FinetuneDefaults, MetricSpec, Task

N_CLASSES = 3


class Blobs(torch.utils.data.Dataset):
    """Class c = colour channel c raised over the image, on noise: separable by a random ViT's pooled tokens."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.label = torch.arange(n) % N_CLASSES
        self.image = 0.3 * torch.randn(n, 3, size, size, generator=g)
        for i, c in enumerate(self.label.tolist()):
            self.image[i, c] += 2.0

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.image[i], "label": self.label[i]}


class ToyClasses(Task):
    """A tiny classification task with every trained protocol."""

    name = "toy-classes"
    metrics = (MetricSpec("top1", "%", True),)
    defaults = FinetuneDefaults(steps=40, batch_size=8, base_lr=0.05, weight_decay=0.0, layer_decay=0.75,
                                warmup_steps=0, img_size=32)
    protocols = ("finetune", "linear", "attentive", "knn")
    knn_target = "label"
    n_classes = N_CLASSES

    def data_info(self) -> dict:
        return {"data": "blobs"}

    def build_dataset(self, split, img_size, limit=None):
        n = 24 if split == "train" else 12
        return Blobs(n if limit is None else min(n, limit), img_size, 0 if split == "train" else 1)

    def build_head(self, info):
        return _Linear(nn.Linear(info["embed_dim"], N_CLASSES), info["num_prefix_tokens"])

    def vector_head(self, dim):
        return _Vector(nn.Linear(dim, N_CLASSES))

    def loss(self, pred, batch):
        return {"loss": Fn.cross_entropy(pred["logits"].float(), batch["label"])}

    def predictions(self, pred, batch):
        return {"pred/label": pred["logits"].argmax(1).cpu().numpy(), "gt/label": batch["label"].cpu().numpy()}

    def ground_truth(self, batch):
        return {"gt/label": batch["label"].cpu().numpy()}

    def score_arrays(self, a):
        return {"top1": 100.0 * (a["pred/label"] == a["gt/label"])}


class _Linear(nn.Module):
    def __init__(self, fc: nn.Module, prefix: int) -> None:
        super().__init__()
        self.fc, self.prefix = fc, prefix

    def forward(self, tokens):
        return {"logits": self.fc(tokens[:, self.prefix:].mean(1))}


class _Vector(nn.Module):
    def __init__(self, fc: nn.Module) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, v):
        return {"logits": self.fc(v)}


class ToyMatch(Task):
    """Correspondence from similarity alone: each patch of an item must find itself among that item's patches."""

    name = "toy-match"
    metrics = (MetricSpec("pck", "%", True),)
    protocols = ("match",)

    def data_info(self) -> dict:
        return {"data": "blobs"}

    def build_dataset(self, split, img_size, limit=None):
        if split != "test":
            raise AssertionError("match must not build a training split")
        return Blobs(4, img_size, 2)

    def match_scores(self, feats, split, img_size, limit):
        p = np.asarray(feats.tokens[:, feats.num_prefix:], np.float32)  # [N, P, C]
        sim = np.einsum("npc,nqc->npq", p, p) / (np.linalg.norm(p, axis=-1)[..., None] ** 2 + 1e-6)
        hit = sim.argmax(-1) == np.arange(p.shape[1])
        return {"pck": 100.0 * hit.reshape(-1)}

    def match_baseline(self, split, img_size, limit, patch_size=None):
        return {"pck": 100.0 / 16, "pck@same_position": 100.0}


@pytest.fixture
def toy(monkeypatch, tmp_path):
    import harness.evaluate as ev

    get = TASKS.get
    monkeypatch.setattr(TASKS, "get", lambda n: {"toy-classes": ToyClasses, "toy-match": ToyMatch}.get(n) or get(n))
    monkeypatch.setattr(ev, "_resolve_backbone", fake_resolve)

    def run(task="toy-classes", **kw):
        kw = {"backbone": "tiny", "task": task, "device": "cpu", **kw}
        return ev.evaluate(ev.EvalConfig(**kw), tmp_path / "results", tmp_path / "runs")

    return run


def test_knn_scores_on_constructed_features():
    from harness.probe import knn_scores

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    labels = np.repeat(np.arange(3), 10)
    bank = centres[labels] + 0.05 * rng.normal(size=(30, 16))
    queries = centres[[2, 0, 1]] + 0.05 * rng.normal(size=(3, 16))
    s = knn_scores(bank, labels, queries, 3, k=5)
    assert s.shape == (3, 3) and list(s.argmax(1)) == [2, 0, 1]
    # the vote weights: exp(cos / T) of the k nearest, summed per class
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries[:1] / np.linalg.norm(queries[:1])
    sim = (q @ b.T)[0]
    top = np.argsort(-sim)[:5]
    np.testing.assert_allclose(s[0, 2], np.exp(sim[top] / 0.07).sum(), rtol=1e-4)
    # a near tie of classes is broken by similarity, not by count: 2 very close votes beat 3 far ones
    bank2 = np.array([[1, 0], [1, 0.01], [0.2, 1], [0.2, 1.01], [0.2, 0.99]], float)
    assert knn_scores(bank2, np.array([0, 0, 1, 1, 1]), np.array([[1.0, 0.0]]), 2, k=5).argmax() == 0


def test_knn_protocol_end_to_end(toy):
    rec = toy(protocol="knn", seeds=2)
    m = rec["metrics"]["top1"]
    assert rec["protocol"] == "knn" and m["mean"] == 100.0 and len(m["per_seed"]) == 2
    assert rec["config"]["feature_cache"] == "on" and len(rec["config"]["features"]) == 2
    assert rec["baseline_mean"]["top1"] == pytest.approx(100 / 3)  # the majority class
    assert rec["per_seed"][0]["k"] == 20


def test_attentive_probe_learns(toy):
    rec = toy(protocol="attentive", steps=60)
    assert rec["protocol"] == "attentive" and rec["metrics"]["top1"]["mean"] >= 90.0


def test_attentive_pool_reads_the_token_that_matters():
    """One token of each sequence carries the target; the query must learn to attend to it among distractors."""
    from harness.probe import AttentivePool

    torch.manual_seed(0)
    x = torch.randn(256, 8, 16)
    key = torch.zeros(16)
    key[0] = 4.0
    pos = torch.randint(0, 8, (256,))
    y = torch.randn(256)
    x[torch.arange(256), pos] = key + torch.stack([torch.zeros(256)] * 15 + [y], 1)
    probe = AttentivePool(16, nn.Linear(16, 1), num_heads=2)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    for _ in range(400):
        loss = (probe(x)[:, 0] - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * y.var().item()


def test_match_protocol_scores_without_training(toy):
    rec = toy(task="toy-match", protocol="match", seeds=2)
    m = rec["metrics"]["pck"]
    assert rec["protocol"] == "match" and len(m["per_seed"]) == 2 and m["mean"] > 50
    assert rec["n_samples"] == 4 * 16 and rec["baseline_mean"] == {"pck": 6.25, "pck@same_position": 100.0}
    assert len(rec["config"]["features"]) == 2


def test_cached_linear_equals_uncached(toy):
    on = toy(protocol="linear", seeds=2, steps=15)
    off = toy(protocol="linear", seeds=2, steps=15, feature_cache="off")
    assert on["config"]["feature_cache"] == "on" and off["config"]["feature_cache"] == "off"
    assert off["config"]["features"] == [] and all(len(k) == 2 for k in on["config"]["features"])
    for a, b in zip(on["per_seed"], off["per_seed"], strict=True):
        assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-3)
    assert on["metrics"]["top1"]["per_seed"] == pytest.approx(off["metrics"]["top1"]["per_seed"], abs=1e-6)


def test_cached_linear_equals_uncached_on_a_synthetic_task(frame_sets, tmp_path, monkeypatch):
    """A regression task with a continuous metric: float16 tokens move it by far less than the seeds' spread."""
    import harness.evaluate as ev

    monkeypatch.setattr(ev, "_resolve_backbone", fake_resolve)
    recs = {}
    for fc in ("on", "off"):
        cfg = ev.EvalConfig(backbone="tiny", task="synth-body-2d", protocol="linear", steps=6, batch_size=4,
                            data_root=str(frame_sets["body"]), device="cpu", seeds=2, feature_cache=fc)
        recs[fc] = ev.evaluate(cfg, tmp_path / "results", tmp_path / "runs")
    for name, m in recs["on"]["metrics"].items():
        np.testing.assert_allclose(m["per_seed"], recs["off"]["metrics"][name]["per_seed"], rtol=2e-3, atol=1e-3)


def test_refusals_are_one_line(toy):
    with pytest.raises(CpcbenchError, match=r"does not support --protocol match; it supports finetune, linear, "
                                            r"attentive, knn$"):
        toy(protocol="match")
    with pytest.raises(CpcbenchError, match=r"toy-match' does not support --protocol linear; it supports match$"):
        toy(task="toy-match", protocol="linear")
    with pytest.raises(CpcbenchError, match="synth-body-2d' does not support --protocol knn; it supports "
                                            "finetune, linear"):
        toy(task="synth-body-2d", protocol="knn")
    with pytest.raises(CpcbenchError, match="cached features only"):
        toy(protocol="attentive", feature_cache="off")
    with pytest.raises(CpcbenchError, match="--feature-cache must be on or off"):
        toy(protocol="linear", feature_cache="maybe")
    with pytest.raises(CpcbenchError, match="unknown protocol 'probe'"):
        toy(protocol="probe")


@pytest.mark.parametrize("task,protocol", [("toy-classes", "attentive"), ("toy-match", "match")])
def test_cli_runs_the_frozen_protocols(toy, tmp_path, task, protocol):
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    r = CliRunner().invoke(app, ["eval", "--backbone", "tiny", "--task", task, "--protocol", protocol, "--steps",
                                 "3", "--device", "cpu", "--results", str(tmp_path / "cli-results"), "--runs",
                                 str(tmp_path / "cli-runs"), "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)[0]
    assert rec["protocol"] == protocol and rec["config"]["feature_cache"] == "on" and rec["metrics"]


def test_warm_cell_loads_no_training_images(toy, monkeypatch):
    built: list[str] = []
    orig = ToyClasses.build_dataset

    def spy(self, split, img_size, limit=None):
        built.append(split)
        return orig(self, split, img_size, limit)

    monkeypatch.setattr(ToyClasses, "build_dataset", spy)
    toy(protocol="linear", steps=2, seeds=2)
    assert built.count("train") == 1  # the cold cell: built once, for both seeds
    built.clear()
    rec = toy(protocol="linear", steps=2, seeds=2)
    assert "train" not in built and rec["config"]["n_train_full"] == 24


def test_elementwise_mode_matches_scipy() -> None:
    """The trivial baseline's majority (per element of integer targets) equals scipy.stats.mode, ties included."""
    from scipy.stats import mode

    from tasks.base import elementwise_mode

    rng = np.random.default_rng(0)
    for shape in [(40,), (25, 3, 4), (7, 5)]:
        x = rng.integers(-2, 4, size=shape)
        np.testing.assert_array_equal(elementwise_mode(x), mode(x, axis=0, keepdims=False).mode)
    assert elementwise_mode(np.array([3, 1, 3, 1])) == 1  # a tie: the smallest value

"""The bf16 path, on any CPU: the path a CPU that computes bf16 fast takes (``train.precision=bf16``,
or ``auto`` where the probe finds bf16 faster; ``$CSRSEG_AUTO_PRECISION=bf16`` takes it everywhere).

bf16 keeps 8 significant bits: each rounding errs by up to 2^-8 (0.4 %) of the value. oneDNN and
torch accumulate in fp32 inside each layer, so the error grows with the number of layers a value
passes (about 40 roundings from the image to the loss here), not with the sizes of the sums:
independent roundings of that size add up to about sqrt(40) x 0.4 % = 2.5 %. The tolerances below
are twice that: what is under test is that bf16 computes the same thing, not its last bits.
"""

import dataclasses

import pytest
import torch

from csrseg import build_model
from csrseg.api import train
from csrseg.data import CocoInstances, Transform, collate, resolve_split
from csrseg.engine.checkpoint import load_checkpoint
from csrseg.inference.predictor import Predictor
from csrseg.runtime.precision import Precision, resolve
from tests.conftest import fake_checkpoint, tiny_config

BF16_RELATIVE = 0.05  # see the module docstring


def _batch(synth_root, cfg, count=4):
    dataset = CocoInstances(*resolve_split(synth_root, "train"), Transform(cfg.input, train=False))
    images, targets = collate([dataset[i] for i in range(count)], cfg.input.size_divisor)
    return images, [t["labels"] for t in targets], [t["masks"] for t in targets]


@pytest.mark.parametrize("head", ["solov2", "knet"])
def test_a_bf16_training_step_computes_the_fp32_loss_within_bf16s_precision(synth_root, head):
    cfg = tiny_config()
    if head == "knet":
        from csrseg.config import load_config

        cfg = dataclasses.replace(cfg, model=load_config("demo", ["model.head.type=knet", "model.head.num_proposals=20",
                                                                  "model.head.ffn_channels=64", "model.head.num_groups=8",
                                                                  "model.neck.channels=32", "model.neck.csr_channels=32",
                                                                  "model.neck.num_groups=8"]).model)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    images, labels, masks = _batch(synth_root, cfg)
    losses = {}
    for name in ("fp32", "bf16"):
        with Precision(name, "test").autocast("cpu"):
            outputs = model(images)
        loss = model.loss(outputs, labels, masks)["loss"]
        model.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), name
        losses[name] = loss.item()
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=BF16_RELATIVE)


def test_auto_takes_the_bf16_path_where_told_and_a_bf16_run_resumes_to_its_own_weights(synth_root, tmp_path, monkeypatch):
    """Resuming is exact in bf16 too (the same kernels on the same machine): held to atol 0."""
    monkeypatch.setenv("CSRSEG_AUTO_PRECISION", "bf16")
    assert resolve("auto", "cpu").name == "bf16"
    cfg = tiny_config(epochs=1, batch_size=4, precision="auto", warmup_iters=1)
    straight = train(synth_root, config=cfg, out=tmp_path / "straight", device="cpu", progress=False, val_split=None)
    assert load_checkpoint(straight.last)["precision"] == "bf16" and straight.iterations == 3
    first = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_iters=1))
    train(synth_root, config=first, out=tmp_path / "resumed", device="cpu", progress=False, val_split=None)
    train(out=tmp_path / "resumed", resume=True, overrides=["train.max_iters=0"], device="cpu", progress=False,
          val_split=None)
    a, b = load_checkpoint(straight.last)["model"], load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_bf16_inference_computes_the_fp32_network_outputs_within_bf16s_precision(tmp_path):
    """The predictor's network in bf16 against fp32 on one image: every output tensor (class logits,
    kernels, mask features) within 5 % of its norm (see the module docstring). Post-processing is
    fp32 either way; instances are not compared one by one, since a few near-equal scores may fall
    either side of a threshold or of Matrix NMS's decay."""
    import numpy as np

    weights = fake_checkpoint(tmp_path, cls_bias=-3.0)
    image = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    outputs = {}
    for name in ("fp32", "bf16"):
        predictor = Predictor(weights, device="cpu", precision=name)
        assert predictor.precision.name == name
        batch, _ = collate([predictor._sample(image)], predictor.cfg.input.size_divisor)
        with torch.no_grad(), predictor.precision.autocast("cpu"):
            out = predictor.model(batch.contiguous(memory_format=torch.channels_last))
        outputs[name] = [t.float() for t in (*out.cls_logits, *out.kernels, out.mask_feats)]
    for ours, theirs in zip(outputs["fp32"], outputs["bf16"]):
        assert (theirs - ours).norm() <= BF16_RELATIVE * ours.norm()

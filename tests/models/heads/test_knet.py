"""K-Net head: matcher, losses, parameter count, post-processing, training."""

import dataclasses
import itertools

import pytest
import torch

from csrseg import build_model, load_config
from csrseg.config import without_pretrained
from csrseg.models.heads.common import LossConfig
from csrseg.models.heads.knet.config import KNetConfig, KNetPostprocessConfig
from csrseg.models.heads.knet import KNetOutput
from csrseg.models.heads.knet.loss import KNetLoss, paint_semantic
from csrseg.models.heads.knet.matcher import dice_cost, hungarian, mask_bce_cost
from tests.conftest import tiny_config


def knet_tiny(**knet: object):
    """The tiny test config with K-Net's head (fewer proposals and a narrower FFN: faster)."""
    cfg = tiny_config()
    head = KNetConfig(**{"num_proposals": 20, "ffn_channels": 64, "num_groups": 8, **knet})
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head=head))


@pytest.mark.parametrize("shape", [(5, 3), (4, 4), (3, 5), (6, 1)])
def test_hungarian_matches_a_brute_force_over_all_permutations(shape):
    g = torch.Generator().manual_seed(sum(shape))
    for _ in range(5):
        cost = torch.rand(shape, generator=g)
        rows, cols = hungarian(cost)
        n, m = shape
        assert len(rows) == min(n, m) and len(set(rows.tolist())) == len(set(cols.tolist())) == min(n, m)
        if n >= m:  # choose a proposal for every ground truth
            best = min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        else:  # more ground truths than proposals: every proposal gets one
            best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        assert cost[rows, cols].sum().item() == pytest.approx(float(best), abs=1e-6)


def test_hungarian_survives_non_finite_costs():
    cost = torch.tensor([[float("nan"), 1.0], [0.5, float("inf")]])
    rows, cols = hungarian(cost)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]


def test_batched_matching_equals_matching_each_image_alone():
    """The loss moves the batch's costs and assignments in one copy each way; the pairs must be
    each image's own Hungarian assignment, an image without objects included."""
    from csrseg.models.heads.knet.matcher import match_cost

    torch.manual_seed(0)
    cfg = KNetConfig(num_proposals=6)
    criterion = KNetLoss(3, cfg)
    masks, cls = torch.randn(3, 6, 8, 8), torch.randn(3, 6, 3)
    labels = [torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long), torch.tensor([1, 1, 0, 2])]
    targets = [(torch.rand(len(l), 8, 8) > 0.5).float() for l in labels]
    got = criterion._match(cls, masks, labels, targets)
    for b, (props, gts) in enumerate(got):
        if len(labels[b]) == 0:
            assert props.numel() == gts.numel() == 0
            continue
        want = hungarian(match_cost(cls[b], masks[b], labels[b], targets[b], cfg))
        assert torch.equal(props, want[0]) and torch.equal(gts, want[1])
    assert [len(p) for p, _ in got] == [2, 0, 4]


def test_mask_costs_prefer_the_matching_mask():
    target = torch.zeros(2, 64)
    target[0, :32], target[1, 32:] = 1, 1
    logits = torch.where(target > 0, 20.0, -20.0)  # proposal i predicts ground truth i
    for cost in (dice_cost(logits, target), mask_bce_cost(logits, target)):
        assert cost[0, 0] < cost[0, 1] and cost[1, 1] < cost[1, 0]
    assert dice_cost(logits, target).diag().max() < 1e-3


def _outputs_predicting(mask: torch.Tensor, num_props=3, num_classes=2, label=1, stages=2):
    """Every proposal predicts ``mask`` (stride 8, ±50 logits); proposal 0 calls it ``label``."""
    logits = torch.where(mask > 0, 50.0, -50.0)[None, None].expand(1, num_props, -1, -1).clone()
    cls = torch.full((1, num_props, num_classes), -50.0)
    cls[0, 0, label] = 50.0
    sem = torch.full((1, num_classes, *mask.shape), -50.0)
    sem[0, label] = torch.where(mask > 0, 50.0, -50.0)
    return KNetOutput([logits] * (stages + 1), [cls] * stages, sem)


def test_perfect_prediction_gives_zero_dice_and_weights_follow_eq6():
    gt = torch.zeros(1, 64, 64, dtype=torch.uint8)
    gt[0, 16:48, 8:40] = 1  # whole stride-8 pixels, so every stride is exact
    small = torch.zeros(8, 8)
    small[2:6, 1:5] = 1
    criterion = KNetLoss(2, KNetConfig())
    losses = criterion(_outputs_predicting(small), [torch.tensor([1])], [gt])
    assert losses["loss_dice"].item() < 1e-6 and losses["loss_focal"].item() < 1e-6
    assert losses["loss_cls"].item() < 1e-6 and losses["loss_sem"].item() < 1e-6
    wrong = criterion(_outputs_predicting(1 - small), [torch.tensor([1])], [gt])
    assert wrong["loss_dice"].item() > 2.5  # about 1 per round (kernel head + 2 stages)
    total = wrong["loss_cls"] + 2 * wrong["loss_dice"] + 3 * wrong["loss_focal"] + wrong["loss_sem"]
    torch.testing.assert_close(wrong["loss"], total)


def test_knet_original_weights_use_mask_bce():
    gt = torch.zeros(1, 64, 64, dtype=torch.uint8)
    gt[0, 16:48, 8:40] = 1
    small = torch.zeros(8, 8)
    small[2:6, 1:5] = 1
    knet_loss = LossConfig(cls_weight=2.0, dice_weight=4.0, focal_weight=1.0, mask_type="bce")
    losses = KNetLoss(2, KNetConfig(loss=knet_loss))(_outputs_predicting(1 - small), [torch.tensor([1])], [gt])
    assert "loss_mask" in losses and "loss_focal" not in losses
    total = 2 * losses["loss_cls"] + 4 * losses["loss_dice"] + losses["loss_mask"] + losses["loss_sem"]
    torch.testing.assert_close(losses["loss"], total)


def test_semantic_targets_are_painted_from_instance_masks():
    masks = torch.zeros(2, 4, 4)
    masks[0, :2, :2] = 1.0
    masks[1, 1:3, 1:3] = 0.6  # covers more than half of its pixels; drawn last, wins the overlap
    painted = paint_semantic(torch.tensor([3, 1]), masks, 5)
    assert painted[0, 0] == 3 and painted[1, 1] == 1 and painted[2, 2] == 1 and painted[3, 3] == 5


def test_image_without_instances_gives_a_finite_loss_that_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_model(knet_tiny())
    images = torch.randn(2, 3, 64, 64)
    gt_masks = [torch.zeros(0, 64, 64, dtype=torch.uint8)] * 2
    losses = model.loss(model(images), [torch.zeros(0, dtype=torch.long)] * 2, gt_masks)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_dice"].item() == 0 and losses["loss_cls"].item() > 0
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []  # DDP needs no find_unused_parameters


def test_every_parameter_gets_a_gradient_with_instances_and_knets_neck():
    torch.manual_seed(0)
    cfg = knet_tiny()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, neck=dataclasses.replace(cfg.model.neck, type="fpn_semantic")))
    model = build_model(cfg)
    mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
    mask[0, 8:40, 16:48] = 1
    losses = model.loss(model(torch.randn(1, 3, 64, 64)), [torch.tensor([2])], [mask])
    losses["loss"].backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_fp16_autocast_keeps_every_stage_finite():
    """GPUs without bf16 (V100, T4) train in fp16: the kernel pooling sums features over whole masks
    and the gated update multiplies two projections of that sum, past fp16's 65504 at 128 px already.
    Both run in fp32; the rest of the head may take fp16."""
    torch.manual_seed(0)
    cfg = load_config("demo", ["model.head.type=knet", "input.short_side=128", "input.max_size=128"])
    model = build_model(cfg)
    mask = torch.zeros(1, 128, 128, dtype=torch.uint8)
    mask[0, 16:80, 32:96] = 1
    with torch.autocast("cpu", dtype=torch.float16):
        out = model(torch.randn(2, 3, 128, 128) * 3)
    assert out.stage_masks[-1].dtype == torch.float16  # autocast still applies outside the update
    assert all(m.isfinite().all() for m in out.stage_masks) and all(c.isfinite().all() for c in out.stage_cls)
    losses = model.loss(out, [torch.tensor([1])] * 2, [mask] * 2)
    assert all(torch.isfinite(v) for v in losses.values())


def test_knet_preset_has_knets_trainable_parameter_count():
    # K-Net's det config (knet_s3_r50_fpn) has 37,257,024 trainable parameters, the paper's 37.26 M:
    # stem and stage 1 frozen, BatchNorm scale and shift trained elsewhere (mmcv's counting)
    model = build_model(without_pretrained(load_config("knet")))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(trainable - 37.26e6) < 0.01e6
    assert trainable == 37_257_024


def test_postprocess_returns_the_top_scored_pairs_at_the_original_size():
    torch.manual_seed(0)
    model = build_model(knet_tiny()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
        eager = model.postprocess(out, [(60, 90)], [(120, 180)])[0]
        static = model.postprocess(out, [(60, 90)], [(120, 180)], static=True)[0]
    assert eager["masks"].shape[1:] == (120, 180) and eager["masks"].dense().dtype == torch.bool
    assert len(eager["scores"]) <= 20 * 4 and torch.all(eager["scores"][:-1] >= eager["scores"][1:])
    scores = out.stage_cls[-1].sigmoid().flatten()
    assert eager["scores"][0].item() == pytest.approx(scores.max().item())
    for key in ("labels", "scores", "boxes"):
        assert torch.equal(eager[key], static[key]), key
    assert torch.equal(eager["masks"].dense(), static["masks"])


def test_max_per_img_limits_the_instances():
    torch.manual_seed(0)
    cfg = knet_tiny()
    head = dataclasses.replace(cfg.model.head, postprocess=KNetPostprocessConfig(max_per_img=5, mask_thr=0.0))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head=head))
    model = build_model(cfg).eval()
    with torch.no_grad():
        result = model.predict(torch.randn(1, 3, 64, 64), [(64, 64)], [(64, 64)])[0]
    assert len(result["scores"]) == 5  # threshold 0: no mask is empty


@pytest.mark.numerics
def test_onnx_export_of_the_knet_pipeline_gives_the_same_instances(tmp_path):
    import numpy as np

    from csrseg.config import to_dict
    from csrseg.engine.checkpoint import atomic_save
    from csrseg.deploy.onnx import export_onnx
    from csrseg.inference.onnx_predictor import OnnxPredictor
    from csrseg.inference.predictor import Predictor
    from tests.conftest import match_instances

    torch.manual_seed(0)
    cfg = knet_tiny()
    model = build_model(cfg)
    weights = tmp_path / "knet.pt"
    atomic_save(dict(model=model.state_dict(), config=to_dict(cfg), classes=["a", "b", "c", "d"], cat_ids=[1, 2, 3, 4]), weights)
    predictor = Predictor(weights, device="cpu", score_thr=0.0)
    path = export_onnx(predictor.model, predictor.cfg.input, tmp_path / "knet.onnx")
    onnx_predictor = OnnxPredictor(path, score_thr=0.0)
    rng = np.random.default_rng(0)
    for shape in ((100, 150, 3), (90, 60, 3)):
        image = rng.integers(0, 255, shape, dtype=np.uint8)
        ours, theirs = predictor.predict(image), onnx_predictor.predict(image)
        assert len(ours) > 10 and all(i.mask.shape == shape[:2] for i in ours + theirs)
        match_instances(ours, theirs, min_iou=0.99, score_tol=1e-3)


def _twin_objects(channels: int, size: int = 32) -> torch.Tensor:
    """A fused feature ``(1, C, size, size)``: a flat background and two identical 4x4 objects far from the
    borders, at places that differ by 16 cells."""
    gen = torch.Generator().manual_seed(0)
    feat = torch.zeros(1, channels, size, size)
    pattern = torch.randn(channels, 4, 4, generator=gen) * 3
    for y, x in ((6, 6), (6 + 16, 6 + 16)):
        feat[0, :, y:y + 4, x:x + 4] = pattern
    return feat


def test_without_position_the_initial_kernels_answer_two_identical_objects_alike():
    """On one fused feature without position, K-Net's initial kernels (static 1x1 convs) answer two identical
    objects alike, so no initial proposal can be one object's and not the other's; K-Net's neck adds a sine
    encoding to its top level, and ``model.head.position=sine`` adds one to the head's input (issue 31
    measured it: no gain at the CPU recipe, RESULTS.md)."""
    from csrseg.models.necks.output import NeckOutput

    small = ["model.backbone.weights=none", "model.neck.channels=32", "model.head.num_groups=8",
             "model.head.ffn_channels=64", "model.head.num_proposals=16"]
    for position, alike in (("none", True), ("sine", False)):
        torch.manual_seed(0)
        head = build_model(load_config("paper", [*small, f"model.head.position={position}"])).head.eval()
        with torch.no_grad():
            _, masks, _ = head.kernel_head(NeckOutput(_twin_objects(32)))
        first, second = masks[0, :, 6:10, 6:10], masks[0, :, 22:26, 22:26]  # (N, 4, 4) each
        if alike:
            torch.testing.assert_close(first, second, rtol=0, atol=1e-5)  # fp32 sums of the same values
        else:  # many kernels answer the two differently
            gap = (first - second).abs().amax(dim=(1, 2))
            assert (gap > 0.1 * masks.abs().amax()).float().mean() >= 0.25

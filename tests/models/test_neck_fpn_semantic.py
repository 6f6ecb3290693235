"""K-Net's neck: FPN on C2-C5 + SemanticFPN -> (localisation, semantic) at stride 8."""

import torch

from csrseg.models.necks.config import NeckConfig
from csrseg.models.layers.position import sine_position_encoding
from csrseg.models.necks.fpn_semantic import FPNSemanticC3Neck, FPNSemanticNeck


def test_two_stride_8_outputs_from_four_levels():
    torch.manual_seed(0)
    neck = FPNSemanticNeck((16, 32, 64, 128), NeckConfig(type="fpn_semantic", channels=32, num_groups=8))
    feats = [torch.randn(2, c, 128 // s, 192 // s) for c, s in zip((16, 32, 64, 128), (4, 8, 16, 32))]
    loc, sem = neck(feats)  # a NeckOutput: (features, semantic)
    assert loc.shape == sem.shape == (2, 32, 16, 24)
    assert loc.min() >= 0 and not torch.equal(loc, sem)  # each ends in its own conv-GN-ReLU


def test_without_c2_the_same_outputs_come_from_three_levels():
    torch.manual_seed(0)
    neck = FPNSemanticC3Neck((32, 64, 128), NeckConfig(type="fpn_semantic_c3", channels=32, num_groups=8))
    feats = [torch.randn(2, c, 128 // s, 192 // s) for c, s in zip((32, 64, 128), (8, 16, 32))]
    loc, sem = neck(feats)
    assert loc.shape == sem.shape == (2, 32, 16, 24)
    assert len(neck.semantic.levels) == 3 and len(neck.fpn.lateral) == 3  # no P2 branch, no C2 lateral


def test_a_model_with_the_c3_neck_asks_the_backbone_for_three_levels():
    from csrseg.config import load_config, without_pretrained
    from csrseg.models import build_model

    cfg = without_pretrained(load_config("demo", ["model.head.type=knet", "model.neck.type=fpn_semantic_c3"]))
    model = build_model(cfg).eval()
    assert model.neck.levels == (3, 4, 5)
    with torch.no_grad():
        out = model.neck(model.backbone(torch.randn(1, 3, 64, 96)))
    assert out[0].shape[-2:] == (8, 12)  # stride 8


def test_sine_encoding_has_sines_and_cosines_of_normalised_positions():
    pos = sine_position_encoding(torch.zeros(1, 8, 3, 5))
    assert pos.shape == (1, 8, 3, 5)
    # channel 0: sin of the normalised y position (lowest frequency); channel 4: sin of x
    ys = torch.arange(1, 4) / 3 * 2 * torch.pi
    torch.testing.assert_close(pos[0, 0, :, 0], torch.sin(ys), atol=1e-5, rtol=0)
    torch.testing.assert_close(pos[0, 1, :, 0], torch.cos(ys), atol=1e-5, rtol=0)
    assert torch.equal(pos[0, 4, 0], pos[0, 4, 2])  # x channels do not vary along y

"""K-Net's neck: FPN on C2-C5 + SemanticFPN -> (localisation, semantic) at stride 8."""

import torch

from csrseg.models.necks.config import NeckConfig
from csrseg.models.layers.position import sine_position_encoding
from csrseg.models.necks.fpn_semantic import FPNSemanticNeck


def test_two_stride_8_outputs_from_four_levels():
    torch.manual_seed(0)
    neck = FPNSemanticNeck((16, 32, 64, 128), NeckConfig(type="fpn_semantic", channels=32, num_groups=8))
    feats = [torch.randn(2, c, 128 // s, 192 // s) for c, s in zip((16, 32, 64, 128), (4, 8, 16, 32))]
    loc, sem = neck(feats)  # a NeckOutput: (features, semantic)
    assert loc.shape == sem.shape == (2, 32, 16, 24)
    assert loc.min() >= 0 and not torch.equal(loc, sem)  # each ends in its own conv-GN-ReLU


def test_sine_encoding_has_sines_and_cosines_of_normalised_positions():
    pos = sine_position_encoding(torch.zeros(1, 8, 3, 5))
    assert pos.shape == (1, 8, 3, 5)
    # channel 0: sin of the normalised y position (lowest frequency); channel 4: sin of x
    ys = torch.arange(1, 4) / 3 * 2 * torch.pi
    torch.testing.assert_close(pos[0, 0, :, 0], torch.sin(ys), atol=1e-5, rtol=0)
    torch.testing.assert_close(pos[0, 1, :, 0], torch.cos(ys), atol=1e-5, rtol=0)
    assert torch.equal(pos[0, 4, 0], pos[0, 4, 2])  # x channels do not vary along y

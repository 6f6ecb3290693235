"""CSR (eqs. 1-5) and D2S as stand-alone modules."""

import pytest
import torch

from csrseg.models.layers import CrossScaleReweighting, DepthToSpace


def _features(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, s, s, generator=g) for c, s in ((24, 16), (40, 8), (56, 4))]


def test_csr_equals_equations_computed_by_hand():
    torch.manual_seed(0)
    csr = CrossScaleReweighting((24, 40, 56), out_channels=12, hidden=8)
    feats = _features()
    target = torch.randn(2, 12, 4, 4)
    # eq. 3 and 4: P_i = mean over space, F_i = W0_i P_i
    f = [feat.sum(dim=(2, 3)) / (feat.shape[2] * feat.shape[3]) for feat in feats]
    f = [p @ lin.weight.T + lin.bias for p, lin in zip(f, csr.level_proj)]
    h = torch.cat(f, dim=1)  # eq. 2
    hidden = torch.clamp(h @ csr.squeeze.weight.T + csr.squeeze.bias, min=0)
    r = 1 / (1 + torch.exp(-(hidden @ csr.excite.weight.T + csr.excite.bias)))  # eq. 1
    expected = target * r[:, :, None, None]  # eq. 5
    torch.testing.assert_close(csr(feats, target), expected)


def test_csr_output_depends_on_the_lowest_level():
    torch.manual_seed(0)
    csr = CrossScaleReweighting((24, 40, 56), 12, 8)
    feats = _features()
    target = torch.randn(2, 12, 4, 4)
    changed = [feats[0] + 1.0, feats[1], feats[2]]
    assert not torch.allclose(csr(feats, target), csr(changed, target))


def test_csr_gradients_reach_all_linear_maps():
    csr = CrossScaleReweighting((24, 40, 56), 12, 8)
    csr(_features(), torch.randn(2, 12, 4, 4)).square().sum().backward()
    for name, param in csr.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_d2s_pixel_shuffle_moves_values_as_defined():
    d2s = DepthToSpace(16, 8, scale=2, num_groups=4)
    x = torch.randn(1, 16, 3, 5)
    shuffled = d2s.shuffle(x)
    assert shuffled.shape == (1, 4, 6, 10)
    # torch's definition: out[c, h*r + i, w*r + j] = in[c*r*r + i*r + j, h, w]
    for c in range(4):
        for i in range(2):
            for j in range(2):
                torch.testing.assert_close(shuffled[0, c, i::2, j::2], x[0, c * 4 + i * 2 + j])


def test_d2s_doubles_resolution_and_sets_channels():
    d2s = DepthToSpace(256, 256)
    out = d2s(torch.randn(2, 256, 7, 9))
    assert out.shape == (2, 256, 14, 18)
    assert (out >= 0).all()  # ends in ReLU
    # depthwise (64 groups) then pointwise: far fewer weights than a dense 3x3 conv
    assert sum(p.numel() for p in d2s.parameters()) < 256 * 256


def test_d2s_rejects_channels_not_divisible_by_scale_squared():
    import pytest

    with pytest.raises(ValueError, match="divisible"):
        DepthToSpace(30, 16)


def test_d2s_on_any_width_picks_a_group_count_that_divides_the_output():
    from csrseg.models.layers.d2s import group_count

    d2s = DepthToSpace(96, 48)  # 32 groups do not divide 48 channels
    assert d2s.num_groups == 24 and d2s.norm.num_groups == 24
    assert d2s(torch.randn(2, 96, 5, 7)).shape == (2, 48, 10, 14)
    assert DepthToSpace(256, 256).num_groups == 32  # the paper's setting is untouched
    assert [group_count(c, 32) for c in (80, 7, 16)] == [20, 7, 16]


def test_d2s_and_csr_refuse_impossible_widths_in_one_line():
    from csrseg.config import ConfigError

    with pytest.raises(ConfigError, match=r"in_channels=10 is not divisible by scale²=4"):
        DepthToSpace(10, 16)
    with pytest.raises(ConfigError, match="hidden=0"):
        CrossScaleReweighting((64, 32, 16), 40, hidden=0)
    csr = CrossScaleReweighting((96, 48, 24), 40, hidden=20)  # odd counts are fine
    feats = [torch.randn(1, c, s, s) for c, s in ((96, 8), (48, 4), (24, 2))]
    assert csr(feats, torch.randn(1, 40, 2, 2)).shape == (1, 40, 2, 2)


def test_d2s_expand_is_espcn_sub_pixel_layer_keeping_every_channel():
    """``expand=4``: a bias-free 1x1 ``C -> 4C`` then the shuffle, so the spatial mixing sees ``C`` channels
    (not ``C/4``); computed by hand from the module's own weights (fp32, default tolerances)."""
    torch.manual_seed(0)
    d2s = DepthToSpace(16, 12, scale=2, num_groups=4, expand=4)
    x = torch.randn(2, 16, 3, 5)
    assert d2s.depthwise.in_channels == 16 and d2s.pointwise.in_channels == 16
    wide = torch.einsum("oc,bchw->bohw", d2s.expand.weight[:, :, 0, 0], x)
    by_hand = torch.relu(d2s.norm(d2s.pointwise(d2s.depthwise(torch.nn.functional.pixel_shuffle(wide, 2)))))
    torch.testing.assert_close(d2s(x), by_hand)
    assert d2s(x).shape == (2, 12, 6, 10)
    assert DepthToSpace(16, 12, num_groups=4, expand=2).depthwise.in_channels == 8  # the printed B_i / r
    assert isinstance(DepthToSpace(16, 12, num_groups=4).expand, torch.nn.Identity)  # default: no weights added


def test_d2s_expand_refuses_what_does_not_shuffle_in_one_line():
    from csrseg.config import ConfigError

    with pytest.raises(ConfigError, match=r"in_channels·expand=6 is not divisible by scale²=4"):
        DepthToSpace(3, 8, expand=2)
    with pytest.raises(ConfigError, match=r"expand=0 must be positive"):
        DepthToSpace(16, 8, expand=0)


@pytest.mark.parametrize("expand, rank", [(1, 4), (2, 8), (4, 16)])
def test_d2s_passes_expand_times_a_quarter_of_its_channels_to_each_output_pixel(expand, rank):
    """What the shuffle costs (issue 31): before its norm, one output pixel of D2S is a linear map of the
    input through ``expand·C/4`` numbers (the depthwise output at that pixel), so the Jacobian of that pixel's
    ``C`` values with respect to the whole input has rank ``expand·C/4``. float64, so that the numerical rank
    is exact (singular values below 1e-9 of the largest count as zero)."""
    torch.manual_seed(0)
    c = 16
    d2s = DepthToSpace(c, c, num_groups=0, expand=expand).double()
    x = torch.randn(1, c, 4, 4, dtype=torch.float64)
    linear = lambda t: d2s.pointwise(d2s.depthwise(d2s.shuffle(d2s.expand(t))))[0, :, 3, 4]  # noqa: E731
    jac = torch.autograd.functional.jacobian(linear, x).reshape(c, -1)  # (C, C·h·w)
    assert torch.linalg.matrix_rank(jac, rtol=1e-9).item() == rank


def test_d2s_icnr_starts_as_nearest_upsampling_then_mixing():
    """ICNR: at initialisation the shuffle of the expanded map equals nearest x2 upsampling of its first
    ``C·expand/4`` channels, exactly (the same weights, copied); it needs the expansion to exist."""
    from csrseg.config import ConfigError

    torch.manual_seed(0)
    d2s = DepthToSpace(16, 16, num_groups=4, expand=4, icnr=True)
    x = torch.randn(2, 16, 3, 5)
    wide = d2s.expand(x)
    nearest = torch.nn.functional.interpolate(wide[:, ::4], scale_factor=2.0, mode="nearest")
    torch.testing.assert_close(d2s.shuffle(wide), nearest, rtol=0, atol=0)
    plain = DepthToSpace(16, 16, num_groups=4, expand=4)
    assert not torch.equal(plain.shuffle(plain.expand(x)),
                           torch.nn.functional.interpolate(plain.expand(x)[:, ::4], scale_factor=2.0, mode="nearest"))
    with pytest.raises(ConfigError, match="icnr=True needs expand > 1"):
        DepthToSpace(16, 16, icnr=True)

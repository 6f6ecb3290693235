import pytest
import torch

from csrseg.models.necks.config import NeckConfig
from csrseg.models.necks.fusion import FusionNeck
from csrseg.models.layers import DepthToSpace

C = (128, 256, 512)


def _levels(b=2, h=64, w=96):
    return [torch.randn(b, c, h // s, w // s) for c, s in zip(C, (8, 16, 32))]


@pytest.mark.parametrize("reweight", [False, True])
@pytest.mark.parametrize("upsample", ["nearest", "d2s"])
def test_every_table2_variant_fuses_to_one_stride8_map(reweight, upsample):
    neck = FusionNeck(C, NeckConfig(channels=64, csr_channels=32, reweight=reweight, upsample=upsample, num_groups=8))
    assert neck(_levels()).features.shape == (2, 64, 8, 12)
    assert (neck.csr is not None) == reweight
    assert isinstance(neck.up[0], DepthToSpace) == (upsample == "d2s")


def test_d2s_neck_is_cheaper_than_fpn_neck_at_paper_width():
    fpn = FusionNeck((512, 1024, 2048), NeckConfig(reweight=False, upsample="nearest"))
    d2s = FusionNeck((512, 1024, 2048), NeckConfig(reweight=False, upsample="d2s"))
    # FPN's 3x3 output conv (590k weights) vs two D2S blocks (~17k each)
    assert sum(p.numel() for p in d2s.parameters()) < sum(p.numel() for p in fpn.parameters())


def test_mean_fusion_halves_the_merge():
    torch.manual_seed(0)
    summed = FusionNeck(C, NeckConfig(channels=32, reweight=False, upsample="nearest", fuse="sum"))
    mean = FusionNeck(C, NeckConfig(channels=32, reweight=False, upsample="nearest", fuse="mean"))
    mean.load_state_dict(summed.state_dict())
    feats = _levels(1)
    # with linear layers only (no D2S norm), mean-fusion = (L3 + (L4 + up L5)/2)/2 before the output conv
    l3, l4, l5 = (lat(f) for lat, f in zip(summed.lateral, feats))
    up = torch.nn.functional.interpolate
    expected = summed.output_conv((l3 + up((l4 + up(l5, scale_factor=2.0)) / 2, scale_factor=2.0)) / 2)
    torch.testing.assert_close(mean(feats).features, expected)


def test_sizes_not_multiple_of_32_are_refused_clearly():
    neck = FusionNeck(C, NeckConfig(channels=64, num_groups=8))
    feats = [torch.randn(1, 128, 9, 9), torch.randn(1, 256, 5, 5), torch.randn(1, 512, 3, 3)]
    with pytest.raises(ValueError, match="multiples of 32"):
        neck(feats)


def test_output_norm_control_normalises_the_fpn_output_per_group():
    torch.manual_seed(0)
    neck = FusionNeck(C, NeckConfig(channels=32, reweight=False, upsample="nearest", num_groups=8, output_norm=True))
    seen = {}
    neck.output_conv[1].register_forward_hook(lambda m, i, o: seen.update(pre=o.detach().clone()))
    out = neck(_levels(1)).features
    assert out.shape == (1, 32, 8, 12)
    groups = seen["pre"].reshape(8, -1)  # 8 groups of 4 channels; GroupNorm's affine is identity at init
    assert torch.allclose(groups.mean(1), torch.zeros(8), atol=1e-5)
    assert torch.allclose(groups.var(1, unbiased=False), torch.ones(8), atol=1e-3)
    assert torch.equal(out, seen["pre"].clamp(min=0))  # then the ReLU, as at the end of D2S


def test_output_norm_with_d2s_is_refused():
    from csrseg.config import ConfigError

    with pytest.raises(ConfigError, match="output_norm"):
        FusionNeck(C, NeckConfig(channels=32, upsample="d2s", num_groups=8, output_norm=True))


@pytest.mark.parametrize("head", ["knet", "solov2"])
@pytest.mark.parametrize("neck", ["fusion", "fpn_semantic"])
def test_a_width_that_32_groups_do_not_divide_builds_and_runs(head, neck):
    """48 channels with the default 32 GroupNorm groups: every norm takes 24 groups instead of dying."""
    from csrseg.config import load_config
    from csrseg.models import build_model

    head_widths = (["model.head.feat_channels=48", "model.head.kernel_dim=48"] if head == "solov2" else
                   ["model.head.ffn_channels=64", "model.head.num_heads=4"])
    cfg = load_config("demo", [f"model.head.type={head}", f"model.neck.type={neck}", "model.neck.channels=48",
                               "model.neck.csr_channels=48", "model.neck.num_groups=32", "model.head.num_groups=32",
                               *head_widths])
    model = build_model(cfg).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_channels % m.num_groups == 0 for m in norms)
    assert {m.num_groups for m in norms if m.num_channels == 48} == {24}
    with torch.no_grad():
        (result,) = model.postprocess(model(torch.randn(1, 3, 64, 64)), [(64, 64)], [(64, 64)])
    assert result["masks"].shape[-2:] == (64, 64)


def test_knet_attention_heads_that_do_not_divide_the_width_are_refused_in_one_line():
    from csrseg.config import ConfigError, load_config
    from csrseg.models import build_model

    cfg = load_config("demo", ["model.head.type=knet", "model.neck.channels=48", "model.neck.csr_channels=48",
                               "model.head.num_heads=5"])
    with pytest.raises(ConfigError, match=r"model.head.num_heads=5 must divide .*neck.channels=48.*e.g. 4"):
        build_model(cfg)


def test_d2s_output_conv_is_a_3x3_over_the_last_sum():
    from csrseg.config import ConfigError

    torch.manual_seed(0)
    plain = FusionNeck(C, NeckConfig(channels=32, csr_channels=16, num_groups=8))
    with_conv = FusionNeck(C, NeckConfig(channels=32, csr_channels=16, num_groups=8, d2s_output_conv=True))
    missing, unexpected = with_conv.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["output_conv.bias", "output_conv.weight"]
    feats = _levels(1)
    torch.testing.assert_close(with_conv(feats).features, with_conv.output_conv(plain(feats).features))
    with pytest.raises(ConfigError, match="d2s_output_conv=true needs neck.upsample=d2s"):
        FusionNeck(C, NeckConfig(channels=32, upsample="nearest", d2s_output_conv=True))


def test_d2s_expand_reaches_both_blocks():
    from csrseg.config import ConfigError, load_config

    torch.manual_seed(0)
    plain = FusionNeck(C, NeckConfig(channels=32, csr_channels=16, num_groups=8))
    wide = FusionNeck(C, NeckConfig(channels=32, csr_channels=16, num_groups=8, d2s_expand=4))
    added = set(wide.state_dict()) - set(plain.state_dict())
    assert added == {"up.0.expand.weight", "up.1.expand.weight"}
    assert all(block.depthwise.in_channels == 32 for block in wide.up)
    assert all(block.depthwise.in_channels == 8 for block in plain.up)
    assert wide(_levels(1)).features.shape == plain(_levels(1)).features.shape
    with pytest.raises(ConfigError, match="d2s_expand needs neck.upsample=d2s"):
        FusionNeck(C, NeckConfig(channels=32, upsample="nearest", d2s_expand=4))
    with pytest.raises(ConfigError, match="model.neck.d2s_expand"):
        load_config("paper", ["model.neck.d2s_expand=3"])
    with pytest.raises(ConfigError, match="d2s_icnr=true needs neck.d2s_expand=2 or 4"):
        FusionNeck(C, NeckConfig(channels=32, d2s_icnr=True))


def test_d2s_norm_off_makes_the_fused_map_linear_in_the_laterals():
    """``d2s_norm=false``: no GroupNorm, no ReLU in either D2S block, so the neck without CSR is linear in
    its inputs: neck(a + b) = neck(a) + neck(b) - neck(0), in float64 to 1e-10."""
    from torch import nn

    from csrseg.config import ConfigError

    torch.manual_seed(0)
    neck = FusionNeck(C, NeckConfig(channels=32, csr_channels=16, num_groups=8, reweight=False, d2s_norm=False)).double()
    assert not any(isinstance(m, (nn.GroupNorm, nn.ReLU)) for m in neck.modules())
    a, b = [[t.double() for t in _levels(1)] for _ in range(2)]
    zero = [torch.zeros_like(t) for t in a]
    got = neck([x + y for x, y in zip(a, b)]).features
    torch.testing.assert_close(got, neck(a).features + neck(b).features - neck(zero).features, rtol=1e-10, atol=1e-10)
    normed = FusionNeck(C, NeckConfig(channels=32, csr_channels=16, num_groups=8, reweight=False))
    assert sum(isinstance(m, nn.GroupNorm) for m in normed.modules()) == 2
    with pytest.raises(ConfigError, match="d2s_norm=false needs neck.upsample=d2s"):
        FusionNeck(C, NeckConfig(channels=32, upsample="nearest", d2s_norm=False))


@pytest.mark.parametrize("steps", ["top", "bottom"])
def test_d2s_steps_puts_d2s_on_one_step_and_nearest_on_the_other(steps):
    """``d2s_steps=top``: fused = conv3x3(L3 + nearest(L4 + D2S(O))); ``bottom``: fused = L3 + D2S(L4 +
    nearest(O)), with O the reweighted L5(C5). Checked by hand in float64 to 1e-10, the D2S block's weights
    taken from the paper's neck (``both``) so that the one block is the same module in both."""
    from torch.nn.functional import interpolate

    from csrseg.config import ConfigError, load_config
    from csrseg.models.necks.fusion import NearestUp

    torch.manual_seed(0)
    cfg = dict(channels=32, csr_channels=16, num_groups=8)
    paper = FusionNeck(C, NeckConfig(**cfg)).double()
    one = FusionNeck(C, NeckConfig(**cfg, d2s_steps=steps)).double()
    d2s_step = 0 if steps == "top" else 1
    assert isinstance(one.up[d2s_step], DepthToSpace) and isinstance(one.up[1 - d2s_step], NearestUp)
    assert (one.output_conv is not None) == (steps == "top")  # a nearest last step keeps FPN's 3x3
    missing, unexpected = one.load_state_dict(paper.state_dict(), strict=False)
    assert sorted(missing) == (["output_conv.bias", "output_conv.weight"] if steps == "top" else [])
    assert sorted(unexpected) == sorted(k for k in paper.state_dict() if k.startswith(f"up.{1 - d2s_step}."))

    feats = [t.double() for t in _levels(1)]
    l3, l4 = one.lateral[0](feats[0]), one.lateral[1](feats[1])
    top = one.csr(feats, one.lateral[2](feats[2]))
    near = lambda t: interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
    if steps == "top":
        expected = one.output_conv(l3 + near(l4 + paper.up[0](top)))
    else:
        expected = l3 + paper.up[1](l4 + near(top))
    torch.testing.assert_close(one(feats).features, expected, rtol=1e-10, atol=1e-10)

    with pytest.raises(ConfigError, match="d2s_steps needs neck.upsample=d2s"):
        FusionNeck(C, NeckConfig(channels=32, upsample="nearest", d2s_steps=steps))
    with pytest.raises(ConfigError, match="model.neck.d2s_steps"):
        load_config("paper", ["model.neck.d2s_steps=middle"])
    if steps == "top":
        with pytest.raises(ConfigError, match="d2s_output_conv=true needs D2S on the last step"):
            FusionNeck(C, NeckConfig(channels=32, d2s_steps="top", d2s_output_conv=True))


def test_output_conv_false_ends_the_neck_at_the_last_sum():
    """``output_conv=false`` after a nearest last step: fused = L3 + nearest(L4 + up(O)), by hand in float64
    to 1e-10, for the FPN baseline and for ``d2s_steps=top`` (the paper's words read literally); refused
    where D2S takes the last step (no output conv there to drop) and beside ``output_norm``."""
    from torch.nn.functional import interpolate

    from csrseg.config import ConfigError

    torch.manual_seed(0)
    near = lambda t: interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
    for cfg in (dict(upsample="nearest", reweight=False), dict(d2s_steps="top")):
        with_conv = FusionNeck(C, NeckConfig(channels=32, csr_channels=16, num_groups=8, **cfg)).double()
        neck = FusionNeck(C, NeckConfig(channels=32, csr_channels=16, num_groups=8, output_conv=False, **cfg)).double()
        missing, unexpected = neck.load_state_dict(with_conv.state_dict(), strict=False)
        assert neck.output_conv is None and not missing
        assert sorted(unexpected) == ["output_conv.bias", "output_conv.weight"]
        feats = [t.double() for t in _levels(1)]
        top = neck.lateral[2](feats[2])
        if neck.csr is not None:
            top = neck.csr(feats, top)
        expected = neck.lateral[0](feats[0]) + near(neck.lateral[1](feats[1]) + neck.up[0](top))
        torch.testing.assert_close(neck(feats).features, expected, rtol=1e-10, atol=1e-10)
    with pytest.raises(ConfigError, match="output_conv=false needs a nearest last step"):
        FusionNeck(C, NeckConfig(channels=32, output_conv=False))
    with pytest.raises(ConfigError, match="output_norm=true needs neck.output_conv=true"):
        FusionNeck(C, NeckConfig(channels=32, upsample="nearest", output_norm=True, output_conv=False))

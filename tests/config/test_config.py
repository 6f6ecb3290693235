import re
import pytest

from csrseg.config import Config, ConfigError, from_dict, load_config, save_config, to_dict
from csrseg.config.presets import PRESETS, TABLE2, TABLE2_SOLOV2, TABLE3, TABLE3_SOLOV2


def test_paper_preset_has_the_papers_values():
    cfg = load_config("paper")
    assert cfg.model.backbone.depth == 50
    assert cfg.model.neck.reweight and cfg.model.neck.upsample == "d2s" and cfg.model.neck.csr_channels == 256
    assert (cfg.input.short_side, cfg.input.max_size) == (800, 1333)
    assert (cfg.model.loss.cls_weight, cfg.model.loss.dice_weight, cfg.model.loss.focal_weight) == (1, 2, 3)
    assert cfg.train.lr == 1e-4 and cfg.train.weight_decay == 0.05 and cfg.train.milestones == (8, 11)


def test_table_presets_switch_only_the_neck():
    switches = {name: (load_config(name).model.neck.reweight, load_config(name).model.neck.upsample) for name in TABLE2[1:]}
    assert switches == {"csr": (True, "nearest"), "d2s": (False, "d2s"), "paper": (True, "d2s")}
    assert load_config(TABLE2[0]).model.neck.type == "fpn_semantic"  # Table II row 1 is K-Net itself
    assert [load_config(n).model.neck.csr_channels for n in TABLE3] == [128, 256, 512, 1024]
    assert {load_config(n).model.head.type for n in TABLE2 + TABLE3} == {"knet"}
    solo = {n: load_config(n).model for n in TABLE2_SOLOV2 + TABLE3_SOLOV2}
    assert {m.head.type for m in solo.values()} == {"solov2"}
    assert (solo["baseline-solov2"].neck.reweight, solo["baseline-solov2"].neck.upsample) == (False, "nearest")


def test_knet_preset_uses_knets_own_losses_and_the_paper_eq6():
    knet, paper = load_config("knet").model.loss, load_config("paper").model.loss
    assert (knet.cls_weight, knet.dice_weight, knet.focal_weight, knet.mask_type) == (2, 4, 1, "bce")
    assert (paper.cls_weight, paper.dice_weight, paper.focal_weight, paper.mask_type) == (1, 2, 3, "focal")


def test_checkpoint_config_without_head_type_is_a_solov2_head():
    data = to_dict(load_config("paper-solov2"))
    del data["model"]["head"]["type"], data["model"]["head"]["knet"]
    assert from_dict(Config, data).model.head.type == "solov2"


def test_overrides_are_typed_and_nested():
    cfg = load_config("paper", ["model.neck.reweight=false", "train.lr=2e-4", "model.head.num_grids=[12,8]"])
    assert cfg.model.neck.reweight is False
    assert cfg.train.lr == pytest.approx(2e-4)
    assert cfg.model.head.num_grids == (12, 8)


@pytest.mark.parametrize("bad", ["model.neck.nope=1", "train.epochs=abc", "model.neck.reweight=maybe", "novalue"])
def test_bad_override_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        load_config("paper", [bad])


def test_yaml_round_trip_and_base(tmp_path):
    cfg = load_config("demo", ["train.epochs=3"])
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    assert load_config(str(path)) == cfg
    (tmp_path / "b.yaml").write_text("base: baseline-solov2\nmodel:\n  neck:\n    csr_channels: 64\n")
    based = load_config(str(tmp_path / "b.yaml"))
    assert based.model.neck.upsample == "nearest" and based.model.neck.csr_channels == 64


def test_unknown_config_name_lists_presets():
    with pytest.raises(ConfigError, match="paper"):
        load_config("no-such-preset")


def test_every_preset_round_trips_through_a_dict():
    for name in PRESETS:
        cfg = load_config(name)
        assert from_dict(Config, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.batch_size=0", "--set: train.batch_size must be at least 1, got 0"),
        ("train.lr=.nan", "--set: train.lr must be a finite number, got nan"),
        ("train.lr=0", "--set: train.lr must be above 0, got 0"),
        ("train.eval_interval=0", "--set: train.eval_interval must be at least 1, got 0"),
        ("train.workers=-1", "--set: train.workers must be at least 0, got -1"),
        ("input.size_divisor=0", "--set: input.size_divisor must be at least 1, got 0"),
        ("input.flip_prob=1.5", "input.flip_prob is a probability"),
        ("model.num_classes=0", "--set: model.num_classes must be at least 1, got 0"),
    ],
)
def test_values_no_run_could_use_are_a_config_error(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("demo", [override])


def test_a_config_files_unusable_value_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: demo\ntrain:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: train.batch_size must be at least 1")):
        load_config(str(path))

import re
import pytest

from csrseg.config import Config, ConfigError, config_from_dict, from_dict, load_config, save_config, to_dict
from csrseg.config.presets import PRESETS, TABLE2, TABLE2_SOLOV2, TABLE3, TABLE3_SOLOV2


def test_paper_preset_has_the_papers_values():
    cfg = load_config("paper")
    assert cfg.model.backbone.depth == 50
    assert cfg.model.neck.reweight and cfg.model.neck.upsample == "d2s" and cfg.model.neck.csr_channels == 256
    assert (cfg.input.short_side, cfg.input.max_size) == (800, 1333)
    loss = cfg.model.head.loss
    assert (loss.cls_weight, loss.dice_weight, loss.focal_weight) == (1, 2, 3)
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
    knet, paper = load_config("knet").model.head.loss, load_config("paper").model.head.loss
    assert (knet.cls_weight, knet.dice_weight, knet.focal_weight, knet.mask_type) == (2, 4, 1, "bce")
    assert (paper.cls_weight, paper.dice_weight, paper.focal_weight, paper.mask_type) == (1, 2, 3, "focal")


def _old_layout(cfg) -> dict:
    """``cfg`` as checkpoints wrote it before the heads owned their settings: K-Net's under
    ``model.head.knet``, the SOLOv2 head's flat in ``model.head``, ``model.loss``/``postprocess``
    shared, ``train.amp``."""
    data = to_dict(cfg)
    head, model = data["model"]["head"], data["model"]
    model["loss"], model["postprocess"] = head.pop("loss"), head.pop("postprocess")
    if head["type"] == "knet":
        model["postprocess"] = dict(score_thr=0.1, nms_pre=500, update_thr=0.05, sigma=2.0, kernel="gaussian",
                                    **model["postprocess"])
        model["head"] = dict(type="knet", knet={k: v for k, v in head.items() if k != "type"},
                             **{k: v for k, v in to_dict(load_config("paper-solov2").model.head).items()
                                if k not in ("type", "loss", "postprocess")})
    else:
        head["knet"] = {k: v for k, v in to_dict(load_config("paper").model.head).items()
                        if k not in ("type", "loss", "postprocess")}
    precision = data["train"].pop("precision")
    data["train"]["amp"] = precision != "fp32"
    return data


@pytest.mark.parametrize("name", ["paper", "knet", "demo", "paper-solov2"])
def test_a_config_of_the_old_layout_loads_as_today(name):
    cfg = load_config(name)
    assert config_from_dict(_old_layout(cfg), "old.pt:config") == cfg
    old_demo = _old_layout(load_config("demo", ["train.precision=fp32"]))
    del old_demo["model"]["head"]["type"], old_demo["model"]["head"]["knet"]  # before K-Net's head: all SOLOv2
    assert config_from_dict(old_demo, "old.pt:config") == load_config("demo", ["train.precision=fp32"])


def test_overrides_of_the_old_layout_mean_what_they_meant(caplog):
    import logging

    demo = load_config("demo", ["model.loss.cls_weight=3", "model.postprocess.mask_thr=0.3", "train.amp=false"])
    assert demo.model.head.loss.cls_weight == 3 and demo.model.head.loss.mask_focal_alpha == 0.25  # the rest kept
    assert demo.model.head.postprocess.mask_thr == 0.3 and demo.train.precision == "fp32"
    knet = load_config("demo", ["model.head.type=knet", "model.head.knet.num_proposals=20"])
    assert knet.model.head.type == "knet" and knet.model.head.num_proposals == 20
    with caplog.at_level(logging.WARNING, logger="csrseg"):
        paper = load_config("paper", ["model.postprocess.score_thr=0.2"])  # K-Net's head never read it
    assert paper == load_config("paper") and "model.postprocess.score_thr: never read by the knet head" in caplog.text


def test_a_head_type_of_its_own_starts_from_that_heads_defaults():
    cfg = load_config("demo", ["model.head.type=knet", "model.head.num_proposals=30"])
    assert cfg.model.head.num_proposals == 30 and cfg.model.head.loss == load_config("paper").model.head.loss
    with pytest.raises(ConfigError, match="model.head.type='mask2former': choose knet or solov2"):
        load_config("demo", ["model.head.type=mask2former"])
    with pytest.raises(ConfigError, match="unknown key 'num_grids'"):
        load_config("paper", ["model.head.num_grids=[12,8]"])  # a SOLOv2 setting on K-Net's head


def test_overrides_are_typed_and_nested():
    cfg = load_config("paper-solov2", ["model.neck.reweight=false", "train.lr=2e-4", "model.head.num_grids=[12,8]"])
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
        ("input.flip_prob=1.5", "--set: input.flip_prob must be from 0 to 1, got 1.5"),
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

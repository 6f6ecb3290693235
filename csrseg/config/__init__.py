"""One configuration object for model, input pipeline and training.

Every part reads the small frozen dataclass it needs (``BackboneConfig`` for the
backbone, ``NeckConfig`` for the neck, ...). Defaults are the paper's values as
fixed in ``shared/DESIGN.md``. A config is built from a named preset
(:mod:`csrseg.config.presets`), a YAML file, or both, then overridden with
``key.sub=value`` strings from the command line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from csrseg.errors import CsrsegError


class ConfigError(CsrsegError, ValueError):
    """A config file, preset name or override that cannot be applied."""


@dataclass(frozen=True)
class BackboneConfig:
    """torchvision backbone returning C3, C4, C5.

    ``arch``: ``resnet`` (of ``depth``; the paper's) or a light torchvision family for
    CPUs (``regnet_x_400mf``, ``regnet_y_400mf``, ``regnet_x_800mf``, ``regnet_y_800mf``,
    ``mobilenet_v3_large``, ``mobilenet_v3_small``; see :mod:`csrseg.models.backbones.light`).

    ``weights``: ``"imagenet"`` (the paper's setting: torchvision's weight API, cached
    under ``$TORCH_HOME``), a path to a ``.pth`` / ``.safetensors`` state dict, or
    ``None`` / ``"none"`` (random init, training from scratch: :func:`load_config`
    then unfreezes every stage and makes BatchNorm trainable, since a frozen random
    stem is never right).
    ``frozen_stages``: 0 freezes nothing, 1 the stem and stage 1 (detection
    practice), up to 4. ``norm``: ``frozen_bn`` (BatchNorm in eval mode, no grad),
    ``eval_bn`` (statistics frozen, scale and shift trained outside the frozen stages:
    mmcv's ``norm_eval=True, requires_grad=True``, K-Net's setting, whose parameter
    count the paper reports) or ``bn`` (trainable, for training from scratch).
    """

    arch: str = "resnet"
    depth: int = 50
    weights: str | None = "imagenet"
    frozen_stages: int = 1
    norm: str = "frozen_bn"


@dataclass(frozen=True)
class NeckConfig:
    """The neck: ``type`` ``fusion`` (CSR + D2S, paper Fig. 1, with its ablation switches,
    Tables II, III) or ``fpn_semantic`` (K-Net's FPN on C2-C5 + SemanticFPN, Table II row 1,
    which reads only ``channels`` and ``num_groups``).

    ``reweight``: Cross-Scale Reweighting on C5 (paper) or a plain lateral conv.
    ``upsample``: ``d2s`` (paper) or ``nearest`` (the FPN baseline).
    ``fuse``: ``sum`` (default) or ``mean`` of the merged levels.
    ``output_norm``: GroupNorm + ReLU after the FPN baseline's 3x3 output conv. Off in the
    paper's baseline; a control that gives nearest upsampling the normalisation D2S
    brings with it, to tell D2S's learned upsampling from its GN + ReLU.
    """

    type: str = "fusion"
    channels: int = 256
    csr_channels: int = 256
    reweight: bool = True
    upsample: str = "d2s"
    fuse: str = "sum"
    # GroupNorm groups, at most: a width this does not divide gets the largest count that does
    num_groups: int = 32
    output_norm: bool = False


@dataclass(frozen=True)
class KNetConfig:
    """K-Net's head (``head.type=knet``): kernel head + iterative kernel-update stages.

    Values are K-Net's det config (``knet_s3_r50_fpn``). ``cost_*`` weigh the Hungarian
    matching cost (focal class, Dice, mask BCE); ``semantic_weight`` the auxiliary
    semantic focal loss of the kernel head. ``assign_on_previous``: each stage is
    matched on the previous stage's predictions (the kernel head's for stage 1), as
    K-Net does; off, on its own.
    """

    num_proposals: int = 100
    num_stages: int = 3
    ffn_channels: int = 2048
    num_heads: int = 8
    num_groups: int = 32  # at most; the largest count dividing the width is used
    kernel_init_std: float = 1.0
    hard_mask_thr: float = 0.5
    prior_prob: float = 0.01
    cost_cls: float = 2.0
    cost_dice: float = 4.0
    cost_mask: float = 1.0
    semantic_weight: float = 1.0
    assign_on_previous: bool = True


@dataclass(frozen=True)
class HeadConfig:
    """The head: ``type`` ``knet`` (the paper's, DESIGN.md) or ``solov2``.

    The flat fields are the SOLOv2 head's (kernel branch, grids, targets); ``knet``
    holds K-Net's.
    """

    type: str = "knet"
    knet: KNetConfig = field(default_factory=KNetConfig)
    feat_channels: int = 256
    stacked_convs: int = 4
    kernel_dim: int = 256
    num_grids: tuple[int, ...] = (40, 36, 24, 16, 12)
    scale_ranges: tuple[tuple[float, float], ...] = (
        (1, 96),
        (48, 192),
        (96, 384),
        (192, 768),
        (384, 2048),
    )
    # SOLOv2's per-level strides: a mask must cover more than its grid's stride in
    # stride-4 pixels (stride / 4 of our stride-8 pixels) to be kept at inference.
    grid_strides: tuple[int, ...] = (8, 8, 16, 32, 32)
    center_sigma: float = 0.2
    num_groups: int = 32  # at most; the largest count dividing the width is used
    # stride-8 mask targets: "binary" (SOLOv2 rescales masks to binary ones) or "soft" (the share
    # of each stride-8 pixel an instance covers, in [0, 1])
    mask_targets: str = "binary"
    # SOLOv2's conv_pred: the mask branch's 1x1 to E followed by GN + ReLU; false: a plain 1x1 conv
    mask_out_norm: bool = True
    prior_prob: float = 0.01


@dataclass(frozen=True)
class LossConfig:
    """Paper eq. 6: ``cls_weight * L_cls + dice_weight * L_dice + focal_weight * L_focal``."""

    cls_weight: float = 1.0
    dice_weight: float = 2.0
    focal_weight: float = 3.0
    cls_type: str = "focal"  # "focal" (SOLOv2/K-Net practice) or "ce" (paper's wording)
    # pixel-wise mask term weighted by focal_weight: "focal" (eq. 6) or "bce" (K-Net's original
    # loss, with cls_weight 2, dice_weight 4, focal_weight 1: the `knet` preset)
    mask_type: str = "focal"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # alpha of the pixel-wise mask focal loss; 0.25 (the classification value) under-weights
    # foreground pixels and leaves masks under-confident, 0.5 weighs both sides alike
    mask_focal_alpha: float = 0.5


@dataclass(frozen=True)
class PostprocessConfig:
    """Inference post-processing (the SOLOv2 head reads all of it, K-Net only ``mask_thr`` and ``max_per_img``)."""

    score_thr: float = 0.1
    mask_thr: float = 0.5
    nms_pre: int = 500
    update_thr: float = 0.05
    max_per_img: int = 100
    sigma: float = 2.0
    kernel: str = "gaussian"


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int = 80
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


@dataclass(frozen=True)
class InputConfig:
    """Resize / flip / normalise / pad. ``train_short_sides`` enables multi-scale training."""

    short_side: int = 800
    max_size: int = 1333
    train_short_sides: tuple[int, ...] = ()
    flip_prob: float = 0.5
    size_divisor: int = 32
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


SCHEDULES = ("step", "cosine", "linear")  # the lr decays of csrseg.engine.schedule


@dataclass(frozen=True)
class TrainConfig:
    """K-Net's 1x recipe used by the paper (§IV-A). ``batch_size`` is the total over all processes."""

    epochs: int = 12
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.25
    schedule: str = "step"  # step (at milestones) | cosine | linear (to lr_gamma over the run): engine/schedule.py
    milestones: tuple[int, ...] = (8, 11)
    lr_gamma: float = 0.1
    warmup_iters: int = 1000
    warmup_ratio: float = 0.001
    clip_grad: float = 1.0
    batch_size: int = 4
    workers: int = 2
    amp: bool = True  # fp16 on CUDA, bf16 on CPUs with native bf16, fp32 elsewhere
    channels_last: bool = False  # NHWC memory format (oneDNN's NHWC kernels); see benchmarks/train_speed.py
    seed: int = 0
    eval_interval: int = 1
    max_iters: int = 0  # >0 stops after this many iterations in total (quick runs, tests)
    max_bad_steps: int = 10  # consecutive non-finite losses before training stops


@dataclass(frozen=True)
class Config:
    name: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------
# dict <-> dataclass


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) suitable for YAML/JSON."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        return value

    return convert(cfg)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type ``hint``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not fit {hint}")
    if origin is tuple:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)) \
                or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range
            raise ConfigError(f"{where}: {value} is too large for a number") from None
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a (possibly partial) nested dict; unknown keys are errors."""
    if cls is HeadConfig and "type" not in data and "num_grids" in data:
        # written before heads had a type (checkpoints of then): every head was SOLOv2's
        data = {**data, "type": "solov2"}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(map(repr, unknown))}; valid: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def merge(cfg: Any, data: dict[str, Any], where: str = "config") -> Any:
    """Return ``cfg`` with the (nested, partial) values of ``data`` replacing its own."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}; valid: {sorted(names)}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            changes[key] = merge(current, value, f"{where}.{key}")
        else:
            changes[key] = _coerce(value, hints[key], f"{where}.{key}")
    return dataclasses.replace(cfg, **changes)


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["model.neck.reweight=false", "train.lr=2e-4"]`` -> nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({_first_line(exc)})") from None
        node = nested
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: the key has an empty part (expected key.sub=value)")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return nested


def load_config(name_or_path: str = "paper", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Named preset or YAML file, then ``key=value`` overrides.

    A YAML file may name a preset to start from with a top-level ``base: NAME`` key;
    otherwise it starts from the defaults.
    """
    from csrseg.config.presets import PRESETS, get_preset

    if "\x00" in name_or_path:
        raise ConfigError(f"config {name_or_path!r}: a name or path cannot hold a NUL character")
    path = Path(name_or_path)
    norm_given = False
    if name_or_path in PRESETS:
        cfg = get_preset(name_or_path)
    elif path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({_first_line(exc)})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read as UTF-8 text ({_first_line(exc)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        base = data.pop("base", None)
        if base is not None and (not isinstance(base, str) or base not in PRESETS):
            raise ConfigError(f"{path}: base: {base!r} is not a preset ({', '.join(PRESETS)})")
        cfg = get_preset(base) if base else Config(name=path.stem)
        cfg = merge(cfg, data, str(path))
        norm_given = _sets_backbone_norm(data)
    else:
        raise ConfigError(f"unknown config {name_or_path!r}: not a preset ({', '.join(PRESETS)}) or a YAML file")
    if overrides:
        cfg = merge(cfg, parse_overrides(overrides), "--set")
        norm_given = norm_given or _sets_backbone_norm(parse_overrides(overrides))
    if name_or_path in PRESETS:  # a preset's own values are sound: a bad one came from --set
        where = "--set" if overrides else name_or_path
    else:
        where = f"{path} with --set" if overrides else str(path)
    check_values(cfg, where)
    return from_scratch_unfrozen(cfg, keep_norm=norm_given)


# Values the types allow but training or inference cannot use: (key, smallest value).
_AT_LEAST = (
    ("model.num_classes", 1), ("input.short_side", 1), ("input.max_size", 1), ("input.size_divisor", 1),
    ("input.flip_prob", 0), ("train.epochs", 1), ("train.batch_size", 1), ("train.workers", 0),
    ("train.warmup_iters", 0), ("train.eval_interval", 1), ("train.max_iters", 0), ("train.max_bad_steps", 1),
    ("train.lr", 0), ("train.weight_decay", 0), ("train.backbone_lr_mult", 0), ("train.lr_gamma", 0),
    ("train.warmup_ratio", 0), ("train.clip_grad", 0),
)
_ABOVE_ZERO = ("train.lr",)


def check_values(cfg: Config, where: str) -> None:
    """Raise a one-line :class:`ConfigError` naming ``where`` (file or ``--set``) and the key of the
    first value no run could use: a count below its minimum, a rate that is negative, NaN or
    infinite, a zero learning rate, a flip probability above 1."""
    for key, low in _AT_LEAST:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be a finite number, got {value}")
        if value < low or (key in _ABOVE_ZERO and value <= 0):
            raise ConfigError(f"{where}: {key} must be {'above' if key in _ABOVE_ZERO else 'at least'} {low}, got {value}")
    if cfg.input.flip_prob > 1:
        raise ConfigError(f"{where}: input.flip_prob is a probability (0 to 1), got {cfg.input.flip_prob}")
    if any(side < 1 for side in cfg.input.train_short_sides):
        raise ConfigError(f"{where}: input.train_short_sides must be at least 1 each, got {list(cfg.input.train_short_sides)}")
    if cfg.train.schedule not in SCHEDULES:
        raise ConfigError(f"{where}: train.schedule={cfg.train.schedule!r}: choose one of {', '.join(SCHEDULES)}")


def _sets_backbone_norm(data: dict[str, Any]) -> bool:
    model = data.get("model")
    return isinstance(model, dict) and isinstance(model.get("backbone"), dict) and "norm" in model["backbone"]


def from_scratch_unfrozen(cfg: Config, keep_norm: bool = False) -> Config:
    """A backbone without pretrained weights trains whole: nothing frozen (a frozen random stem is
    never right) and BatchNorm trainable, unless ``keep_norm`` (the norm was chosen explicitly)."""
    backbone = cfg.model.backbone
    if backbone.weights not in (None, "", "none", "None"):
        return cfg
    norm = backbone.norm if keep_norm else "bn"
    backbone = dataclasses.replace(backbone, weights=None, frozen_stages=0, norm=norm)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone))


def without_pretrained(cfg: Config) -> Config:
    """The same network with no pretrained weights to fetch: for a model whose weights come from
    a checkpoint next, or for sizes and speeds measured on random weights."""
    backbone = dataclasses.replace(cfg.model.backbone, weights=None)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone))


def _first_line(exc: Exception) -> str:
    """YAML errors span several lines (a caret under the column); errors here are one line."""
    return " ".join(str(exc).split())[:200]


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

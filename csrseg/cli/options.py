"""What the verbs' options share: config and data arguments, and argparse types that refuse
impossible values in one line (a count below its minimum, a share above 1, a GPU that is not there)."""

from __future__ import annotations

import argparse
import math

from csrseg import limits


def add_config_args(parser: argparse.ArgumentParser, default: str = "paper") -> None:
    parser.add_argument("--config", default=default, help=f"preset name or YAML file (default {default})")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. train.lr=2e-4 model.neck.reweight=false")


DATA_HELP = ("dataset folder or dataset YAML: COCO ROOT (annotations/instances_<split>.json + <split>/), "
             "Roboflow COCO export, CVAT COCO export, or YAML with train/val annotations + images")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--train-ann", help="train annotation file (replaces the one --data gives)")
    parser.add_argument("--train-images", help="train image folder (default: beside --train-ann)")
    parser.add_argument("--val-ann", help="val annotation file")
    parser.add_argument("--val-images", help="val image folder (default: beside --val-ann)")
    add_layout(parser)


LAYOUTS = ("roboflow", "root", "cvat")


def add_layout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", choices=LAYOUTS,
                        help="a --data folder holding two dataset layouts: the one to read (else the one that loads)")


def add_tiling(parser: argparse.ArgumentParser) -> None:
    """``--tile SIZE --overlap F``: sliced inference (:mod:`csrseg.inference.tiling`)."""
    parser.add_argument("--tile", type=at_least(32), metavar="SIZE",
                        help="slice each image into SIZE px tiles, each seen at the model's scale, merged with the "
                             "whole image: small objects in large frames (SIZE = input.short_side sees the image's "
                             "own pixels)")
    parser.add_argument("--overlap", type=fraction, default=0.25, metavar="F",
                        help="with --tile: the share of a tile its neighbours overlap (default 0.25, below 0.9)")


def sources_from_args(args: argparse.Namespace):
    from csrseg.data.sources import resolve_dataset

    return resolve_dataset(args.data, args.train_split, args.val_split, args.train_ann, args.train_images,
                           args.val_ann, args.val_images, layout=args.layout)


def at_least(low: int):
    """argparse type: an integer not below ``low`` (a count, a size, a batch)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def number(limit: limits.Limit):
    """argparse type: a finite number inside ``limit`` (:mod:`csrseg.limits`, the settings' own ranges),
    refused as ``must be above 0, got -1``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or limit.problem(value):  # NaN and infinities too
            raise argparse.ArgumentTypeError(f"must be {limit.describe()}, got {text}")
        return value

    return parse


above_zero = number(limits.above(0))  # a duration
non_negative = number(limits.at_least(0))  # a wait in milliseconds
fraction = number(limits.fraction())  # a share, a score threshold


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535."""
    value = at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535, got {value}")
    return value


def names(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated names (``cat,dog``), blanks dropped."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def boolean(text: str) -> bool:
    """argparse type: true/false (also yes/no, 1/0); anything else is refused, not read as false."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def device(text: str) -> str:
    """argparse type: ``auto`` (the GPU when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``,
    refused here when no such GPU is usable (rather than deep inside the first tensor copy)."""
    import torch

    if text == "auto":
        from csrseg.runtime.device import resolve_device

        return resolve_device(text)
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA GPU is usable here (torch.cuda.is_available() is False)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: csrseg runs on cpu or cuda")
    return text


def add_exist_ok(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--exist-ok", action="store_true", help=text + " (without it, an occupied --out is refused)")


def add_tracking(parser: argparse.ArgumentParser) -> None:
    """``--track`` and ByteTrack's settings (:class:`~csrseg.tracking.TrackerConfig`: the defaults are its own)."""
    parser.add_argument("--track", action="store_true",
                        help="follow objects across video frames (ByteTrack): a track_id on every row, a colour per track")
    parser.add_argument("--track-high", type=fraction, default=0.5, metavar="S",
                        help="scores matched first and starting tracks (default 0.5)")
    parser.add_argument("--track-low", type=fraction, default=0.1, metavar="S",
                        help="from here to --track-high: matched second, to tracks seen in the last frame (default 0.1)")
    parser.add_argument("--track-match", type=fraction, default=0.2, metavar="IOU",
                        help="the least IoU of a track and a detection to match (default 0.2)")
    parser.add_argument("--track-buffer", type=at_least(1), default=30, metavar="N",
                        help="frames a lost track waits to be found again (default 30)")
    parser.add_argument("--track-iou", choices=("box", "mask"), default="box",
                        help="match by box IoU (default) or mask IoU (objects that share a box)")


def tracker_from_args(args: argparse.Namespace):
    """The :class:`~csrseg.tracking.TrackerConfig` of ``--track*``, or ``None`` without ``--track``."""
    if not args.track:
        return None
    from csrseg.tracking import TrackerConfig

    return TrackerConfig(high=args.track_high, low=args.track_low, match_iou=args.track_match,
                         buffer=args.track_buffer, iou=args.track_iou)


def add_streams(parser: argparse.ArgumentParser) -> None:
    """``--watch`` and ``--max-frames``: endless sources (:mod:`csrseg.inference.streams`)."""
    parser.add_argument("--watch", action="store_true",
                        help="the one source is a folder: read its images, then each new one as it arrives, until "
                             "--max-frames or Ctrl-C")
    parser.add_argument("--max-frames", type=at_least(1), metavar="N",
                        help="a camera, stream or --watch folder: stop after N frames (images); Ctrl-C stops too, "
                             "outputs finished either way")

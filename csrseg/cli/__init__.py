"""The ``csrseg`` command: a thin shell over the package's functions.

``csrseg VERB [options] [--set key.sub=value ...]``; every verb's ``--help`` lists
its options. Errors in the user's input print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from csrseg.engine.preempt import TrainingInterrupted
from csrseg.engine.rundir import check_output_file, check_outputs, next_run_dir
from csrseg.errors import CsrsegError

if TYPE_CHECKING:
    from csrseg.inference.predictor import OnnxPredictor, Predictor
    from csrseg.inference.records import RecordWriter

logger = logging.getLogger("csrseg")


def _add_config_args(parser: argparse.ArgumentParser, default: str = "paper") -> None:
    parser.add_argument("--config", default=default, help=f"preset name or YAML file (default {default})")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. train.lr=2e-4 model.neck.reweight=false")


DATA_HELP = ("dataset folder or dataset YAML: COCO ROOT (annotations/instances_<split>.json + <split>/), "
             "Roboflow COCO export, CVAT COCO export, or YAML with train/val annotations + images")


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--train-ann", help="train annotation file (replaces the one --data gives)")
    parser.add_argument("--train-images", help="train image folder (default: beside --train-ann)")
    parser.add_argument("--val-ann", help="val annotation file")
    parser.add_argument("--val-images", help="val image folder (default: beside --val-ann)")


def _sources(args: argparse.Namespace):
    from csrseg.data.sources import resolve_dataset

    return resolve_dataset(args.data, args.train_split, args.val_split, args.train_ann, args.train_images,
                           args.val_ann, args.val_images)


def _at_least(low: int):
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


def _fraction(text: str) -> float:
    """argparse type: a number from 0 to 1 (a share, a score threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def _boolean(text: str) -> bool:
    """argparse type: true/false (also yes/no, 1/0); anything else is refused, not read as false."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def _device(text: str) -> str:
    """argparse type: ``cpu``, ``cuda`` or ``cuda:N``, refused here when no such GPU is usable (rather
    than deep inside the first tensor copy)."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA GPU is usable here (torch.cuda.is_available() is False)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: csrseg runs on cpu or cuda")
    return text


def _add_exist_ok(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--exist-ok", action="store_true", help=text + " (without it, an occupied --out is refused)")


# ---------------------------------------------------------------------------
# verbs


def cmd_info(args: argparse.Namespace) -> None:
    from csrseg.config import load_config, without_pretrained
    from csrseg.tools.info import model_info, module_tree
    from csrseg.models import build_model

    cfg = load_config(args.config, args.overrides)
    model = build_model(without_pretrained(cfg))  # sizes and FLOPs do not need the weights
    neck = cfg.model.neck
    neck_text = ("K-Net's FPN + SemanticFPN" if neck.type == "fpn_semantic" else
                 f"CSR {'on' if neck.reweight else 'off'} width {neck.csr_channels}, upsample {neck.upsample}")
    print(f"config: {cfg.name}  (backbone R{cfg.model.backbone.depth}, {neck_text}, {cfg.model.head.type} head, "
          f"{cfg.model.num_classes} classes; built with random weights)")
    print(module_tree(model, depth=args.depth))
    info = model_info(model, args.height, args.width)
    print(info.table())


def cmd_synth(args: argparse.Namespace) -> None:
    from csrseg.data.synth import SynthSpec, make_synthetic_dataset

    found = check_outputs(Path(args.out), ["annotations", "train", "val"], args.exist_ok,
                          "pass --exist-ok to replace it or choose another OUT")
    for name in found:  # replaced whole: a smaller set must not leave the old one's images behind
        shutil.rmtree(name) if name.is_dir() else name.unlink()
    out = make_synthetic_dataset(args.out, args.images, args.seed, args.val_fraction, SynthSpec(image_size=args.size))
    print(f"synthetic dataset written to {out} (annotations/instances_{{train,val}}.json, train/, val/)")


def cmd_train(args: argparse.Namespace) -> None:
    from csrseg.api import train

    # a plain --data is resolved by train, after the config: a bad config is named first
    explicit = args.train_ann or args.train_images or args.val_ann or args.val_images
    data = _sources(args) if explicit else args.data
    result = train(data, args.config, args.out, args.overrides, device=args.device, resume=args.resume or False,
                   weights=args.weights, strict=args.strict, train_split=args.train_split,
                   val_split=None if args.no_val else args.val_split, checkpoint_interval=args.checkpoint_interval,
                   log_interval=args.log_interval, exist_ok=args.exist_ok)
    if result.metrics:
        from csrseg.evaluation.coco import format_table

        print(format_table(result.metrics))
    print(f"run folder: {result.run_dir}  (last: {result.last.name}, best: {result.best.name if result.best else '-'}, "
          f"log.jsonl, results.png)")


def cmd_eval(args: argparse.Namespace) -> None:
    from csrseg.api import evaluate, report_path
    from csrseg.evaluation.coco import format_detailed

    if bool(args.weights) == bool(args.onnx):
        raise CsrsegError("give either --weights CKPT or --onnx MODEL.onnx")
    if args.out:  # an explicit --out is the user's file: never replaced unasked (the default one is eval's own)
        out = check_output_file(args.out, args.exist_ok, (".json",), "COCO results (JSON)")
        check_output_file(report_path(out), args.exist_ok)  # the report written beside it
    report = evaluate(args.weights or args.onnx, args.data, split=args.split, ann=args.ann, images=args.images,
                      out=args.out, device=args.device, batch=args.batch, workers=args.workers, progress=True)
    print(format_detailed(report))
    print(f"{report['images']} images of {report['annotations']}, {report['instances']} instances; "
          f"COCO results JSON: {report['results']}; metrics: {report['metrics']}")


def cmd_predict(args: argparse.Namespace) -> None:
    from csrseg.inference.predictor import Predictor, expand_sources
    from csrseg.inference.records import RecordWriter
    from csrseg.inference.video import is_video

    if bool(args.weights) == bool(args.onnx):
        raise CsrsegError("give either --weights CKPT or --onnx MODEL.onnx")
    if args.onnx and args.precision != "fp32":
        raise CsrsegError(f"--precision {args.precision} is for --weights: an ONNX model runs as it was exported "
                          "(fp32, or INT8 with csrseg export --int8)")
    out_dir = Path(args.out) if args.out else next_run_dir(Path("runs") / "predict" / "exp")
    check_outputs(out_dir, ["predictions.json"], args.exist_ok)
    if args.onnx:
        from csrseg.inference.predictor import OnnxPredictor

        predictor = OnnxPredictor(args.onnx, score_thr=args.score_thr)
    else:
        predictor = Predictor(args.weights, device=args.device, score_thr=args.score_thr, precision=args.precision)
    if args.data:
        from csrseg.data.sources import class_names_for

        predictor.class_names = class_names_for(args.data, predictor.cat_ids)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = expand_sources(args.sources)
    if not paths:
        raise CsrsegError(f"no images or videos found in {' '.join(args.sources)}")
    images = [p for p in paths if not is_video(p)]
    videos = [p for p in paths if is_video(p)]

    records = RecordWriter(out_dir / "predictions.json")
    try:
        skipped, count, clips, frames = _predict_sources(args, predictor, images, videos, out_dir, records)
    except BaseException:
        records.discard()
        raise
    if count == 0 and frames == 0:  # every source unreadable: say so, and keep what --out held
        records.discard()
        raise CsrsegError(f"none of the {len(paths)} images or videos could be read (each is named above); "
                          f"nothing written to {out_dir / 'predictions.json'}")
    records.close()
    done = [f"{count} images"] + ([f"{clips} videos ({frames} frames)"] if videos else [])
    print(", ".join(done) + f", {records.count} instances" + (f", {skipped} skipped" if skipped else "")
          + f"; overlays and predictions.json in {out_dir}")


def _predict_sources(args: argparse.Namespace, predictor: Predictor | OnnxPredictor, images: list[Path], videos: list[Path],
                     out_dir: Path, records: RecordWriter) -> tuple[int, int, int, int]:
    """Overlays for every image and video into ``out_dir``, rows into ``records``; returns the counts."""
    from csrseg.data.io import ImageReadError
    from csrseg.inference.predictor import as_rgb_array
    from csrseg.inference.records import instance_records
    from csrseg.inference.video import VideoReadError, predict_video
    from csrseg.inference.visualize import draw_instances

    skipped, count = 0, 0
    for start in range(0, len(images), args.batch):
        chunk, arrays = [], []
        for path in images[start : start + args.batch]:
            try:
                arrays.append(as_rgb_array(path))
                chunk.append(path)
            except ImageReadError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
                skipped += 1
        if not arrays:
            continue
        for path, image, instances in zip(chunk, arrays, predictor.predict_batch(arrays)):
            overlay = draw_instances(image, [i.mask for i in instances], [i.label for i in instances],
                                     [i.score for i in instances], predictor.class_names)
            overlay.save(out_dir / f"{path.stem}.jpg", quality=92)
            count += 1
            records.write(instance_records(str(path), instances))

    clips, frames = 0, 0
    for path in videos:
        try:
            # each frame's instances become RLE records at once: dense masks of a long clip would fill memory
            results = predict_video(predictor, path, out_dir / f"{path.stem}.mp4", stride=args.video_stride,
                                    batch=args.batch, convert=partial(_frame_records, str(path)))
        except VideoReadError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            skipped += 1
            continue
        clips, frames = clips + 1, frames + len(results)
        for _, rows in results:
            records.write(rows)
    return skipped, count, clips, frames


def _frame_records(file_name: str, index: int, instances: list) -> list[dict]:
    from csrseg.inference.records import instance_records

    return instance_records(file_name, instances, frame=index)


def cmd_browse(args: argparse.Namespace) -> None:
    from csrseg.tools.browse import browse_dataset
    from csrseg.config import load_config

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else next_run_dir(Path("runs") / "browse" / "exp")
    check_outputs(out, ["summary.png"], args.exist_ok)
    summary = browse_dataset(args.data, out, cfg.input, images=args.images, split=args.split)
    print(summary.text())
    print(f"{len(summary.drawn)} images with their annotations and summary.png in {out}")


def cmd_convert(args: argparse.Namespace) -> None:
    from collections import Counter

    from csrseg.data.convert import write_coco_root

    out = Path(args.out)
    check_outputs(out, ["annotations"], args.exist_ok, "pass --exist-ok to replace it or choose another OUT")
    skipped: Counter = Counter()
    if args.format == "yolo":
        from csrseg.data.convert.yolo import read_yolo

        splits, names = read_yolo(args.src)
    elif args.format == "labelme":
        from csrseg.data.convert.labelme import read_labelme

        splits, names, skipped = read_labelme(args.src, args.val_fraction)
    else:
        from csrseg.data.convert.via import read_via

        splits, names, skipped = read_via(args.src, args.class_attr, args.val_fraction)
    write_coco_root(out, splits, names, copy=args.copy)
    for what, count in skipped.items():
        print(f"{count} {what}", file=sys.stderr)
    counts = ", ".join(f"{split} {len(records)} images / {sum(len(r.instances) for r in records)} objects"
                       for split, records in splits.items())
    print(f"{args.format} -> COCO: {counts}; {len(names)} classes; written to {out} "
          f"(annotations/instances_<split>.json, images {'copied' if args.copy else 'linked'}); "
          f"train with: csrseg train --data {out}")


def cmd_export(args: argparse.Namespace) -> None:
    from csrseg.engine.checkpoint import save_safetensors
    from csrseg.deploy.onnx import checkpoint_metadata, export_onnx
    from csrseg.inference.predictor import Predictor

    out = Path(args.out)
    if out.is_dir():
        raise CsrsegError(f"{out}: a folder; export writes one file, e.g. {out / ('model.' + args.format)}")
    if args.int8 and args.format != "onnx":
        raise CsrsegError("--int8 quantizes an ONNX model: it cannot go with --format safetensors")
    if out.suffix.lower() != f".{args.format}":  # a safetensors file named best.pt would pass for a checkpoint
        raise CsrsegError(f"{out}: --format {args.format} writes a .{args.format} file; name it so, "
                          f"e.g. {out.with_suffix('.' + args.format)}")
    if args.int8 != bool(args.calib):
        raise CsrsegError("--int8 needs --calib DATA (images to calibrate on)" if args.int8 else
                          "--calib is for --int8 only")
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as max_opset

    if args.format == "onnx" and not 17 <= args.opset <= max_opset:
        raise CsrsegError(f"--opset {args.opset}: choose 17 (the default, the opset the tests check) to {max_opset} "
                          "(the newest torch's exporter writes)")
    check_output_file(out, args.exist_ok)
    calib = None
    if args.int8:  # every input checked before the minutes of export and calibration
        from csrseg.deploy.int8 import calibration_images

        calib = calibration_images(args.calib, args.calib_images)
    predictor = Predictor(args.weights, device="cpu", score_thr=0.0)
    meta = checkpoint_metadata(predictor.cfg, predictor.class_names, predictor.cat_ids)
    if args.int8:
        import tempfile

        from csrseg.deploy.int8 import quantize_onnx

        with tempfile.TemporaryDirectory(prefix="csrseg-export-") as tmp:
            fp32 = export_onnx(predictor.model, predictor.cfg.input, Path(tmp) / "fp32.onnx", meta, opset=args.opset)
            report = quantize_onnx(fp32, out, calib)
        print(f"INT8 ONNX model (QDQ, {report.quantized} conv/matrix ops quantized, {report.kept_fp32} left in fp32, "
              f"calibrated on {report.images} images of {args.calib}) written to {report.path}; "
              f"run it with: csrseg predict --onnx {report.path} IMAGES")
    elif args.format == "onnx":
        path = export_onnx(predictor.model, predictor.cfg.input, args.out, meta, opset=args.opset)
        print(f"ONNX model (opset {args.opset}, checked with onnx.checker) written to {path}; "
              f"run it with: csrseg predict --onnx {path} IMAGES")
    else:
        path = save_safetensors(predictor.model.state_dict(), meta, args.out)
        print(f"safetensors weights written to {path}")


def cmd_benchmark(args: argparse.Namespace) -> None:
    from csrseg.tools.benchmark import run_benchmark

    sizes = []
    for text in args.sizes:
        try:
            width, height = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise CsrsegError(f"--sizes {text!r}: expected WIDTHxHEIGHT, e.g. 1333x800") from None
        if min(width, height) < 32:
            raise CsrsegError(f"--sizes {text!r}: each side at least 32 pixels (the network's coarsest stride)")
        sizes.append((height, width))
    if bool(args.weights) != bool(args.data):
        raise CsrsegError("--weights and --data go together: the checkpoint's AP is measured on the data's val split")
    if args.out:  # checked now, not after minutes of timing
        check_output_file(args.out, args.exist_ok, what="benchmark table")
    report = run_benchmark(sizes, runs=args.runs, warmup=args.warmup, device=args.device, fast_paths=not args.no_fast,
                           weights=args.weights, data=args.data, calib_images=args.calib_images)
    print(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n")


def cmd_ablate(args: argparse.Namespace) -> None:
    from csrseg.tools.ablate import run_ablation

    out = Path(args.out) if args.out else Path("runs") / "ablate" / f"table{args.table}"
    text = run_ablation(args.data, args.table, out, base=args.config, seeds=args.seeds, epochs=args.epochs,
                        overrides=args.overrides, device=args.device, exist_ok=args.exist_ok, jobs=args.jobs,
                        train_only=args.train_only, rows=args.rows)
    print(text)
    if not args.train_only:
        print(f"table and plot: {out / f'table{args.table}.md'}, {out / f'table{args.table}.png'}")


def cmd_demo(args: argparse.Namespace) -> None:
    from csrseg.tools.demo import run_demo

    report = run_demo(Path(args.out) if args.out else next_run_dir(Path("runs") / "demo"), quick=args.quick,
                      images=args.images, device=args.device, overrides=args.overrides, exist_ok=args.exist_ok)
    print(report)


# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csrseg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("info", help="module tree, parameter counts, GFLOPs")
    _add_config_args(p)
    p.add_argument("--height", type=_at_least(1), default=800)
    p.add_argument("--width", type=_at_least(1), default=1333)
    p.add_argument("--depth", type=_at_least(0), default=2, help="module tree depth")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("synth", help="write a synthetic COCO-format dataset")
    p.add_argument("out")
    p.add_argument("--images", type=_at_least(1), default=500, help="total images (train + val)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_at_least(32), default=256, help="image side in pixels (at least 32)")
    p.add_argument("--val-fraction", type=_fraction, default=0.2, help="share of images for val (at least one image)")
    _add_exist_ok(p, "replace a dataset already in OUT")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train on a COCO-format dataset (torchrun for DDP)")
    _add_config_args(p, "paper")
    p.set_defaults(config=None)  # to tell a --config given with --resume from the default (paper)
    _add_data_args(p)
    p.add_argument("--out", help="run folder (default runs/train/<config>[N])")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt, on the dataset it "
                   "recorded (--data: another place)")
    p.add_argument("--weights", help="initial weights (fine-tuning)")
    p.add_argument("--strict", type=_boolean, default=True,
                   help="--strict false loads only the tensors that fit (e.g. another class count)")
    p.add_argument("--device", type=_device, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--no-val", action="store_true", help="skip evaluation")
    p.add_argument("--checkpoint-interval", type=_at_least(0), default=0, help="also save last.pt every N iterations")
    p.add_argument("--log-interval", type=_at_least(1), default=10, help="log.jsonl row every N iterations")
    _add_exist_ok(p, "replace the run already in --out (its checkpoints and log wait in --out/replaced/ until the new run finishes)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="COCO mask AP of a checkpoint or an exported ONNX model")
    p.add_argument("--weights", help="checkpoint (.pt or .safetensors)")
    p.add_argument("--onnx", help="an ONNX model written by csrseg export (fp32 or --int8), run by onnxruntime")
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--split", default="val", help="split to score: val, test, or a split's own name")
    p.add_argument("--ann", help="annotation file to score (instead of --data's split)")
    p.add_argument("--images", help="image folder, if not the split's own (e.g. test2017 for test-dev)")
    p.add_argument("--out", help="COCO results JSON (default: results_<split>.json beside the weights or model)")
    p.add_argument("--device", type=_device)
    p.add_argument("--batch", type=_at_least(1), default=2)
    p.add_argument("--workers", type=_at_least(0), default=2)
    _add_exist_ok(p, "replace an existing --out and its .metrics.json; the default results_<split>.json beside the "
                     "model is always renewed")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="overlays and COCO-style JSON for images and videos")
    p.add_argument("sources", nargs="+", help="images, videos (.mp4 .avi .mov .mkv ...), folders or glob patterns")
    p.add_argument("--weights", help="checkpoint (.pt or .safetensors)")
    p.add_argument("--onnx", help="run an exported ONNX model with onnxruntime instead")
    p.add_argument("--out", help="output folder (default runs/predict/exp[N])")
    p.add_argument("--score-thr", type=_fraction, default=0.3)
    p.add_argument("--data", help="take the class names drawn from this dataset (folder or YAML), by category id")
    p.add_argument("--video-stride", type=_at_least(1), default=1, metavar="N", help="videos: predict every N-th frame")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="network precision: bf16 is the fast path on CPUs with native bf16, fp16 on CUDA")
    p.add_argument("--device", type=_device)
    p.add_argument("--batch", type=_at_least(1), default=1)
    _add_exist_ok(p, "write into an --out that already holds predictions (they are replaced)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("browse", help="ground truth drawn on images, class counts and object sizes at the input size")
    p.add_argument("data", help=DATA_HELP)
    _add_config_args(p)
    p.add_argument("--out", help="output folder (default runs/browse/exp[N])")
    p.add_argument("--images", type=_at_least(1), default=16, help="images to draw")
    p.add_argument("--split", default="train")
    _add_exist_ok(p, "draw into an --out that already holds a browse")
    p.set_defaults(func=cmd_browse)

    p = sub.add_parser("convert", help="YOLO-seg, LabelMe or VIA annotations -> a COCO dataset (ROOT layout)")
    p.add_argument("format", choices=("yolo", "labelme", "via"))
    p.add_argument("src", help="yolo: folder with data.yaml; labelme: folder of .json; via: the exported .json")
    p.add_argument("out", help="output dataset folder")
    p.add_argument("--copy", action="store_true", help="copy the images (default: symbolic links)")
    p.add_argument("--class-attr", default="class", help="via: the region attribute that holds the class")
    p.add_argument("--val-fraction", type=_fraction, default=0.2,
                   help="labelme/via without train/val folders: share of images (by file name) for val")
    _add_exist_ok(p, "replace a dataset already in OUT")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="ONNX (whole pipeline) or safetensors (weights)")
    p.add_argument("out", help="output file")
    p.add_argument("--weights", required=True)
    p.add_argument("--format", choices=("onnx", "safetensors"), default="onnx")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--int8", action="store_true",
                   help="ONNX with the network quantized to INT8 (static, QDQ, per-channel); post-processing stays fp32")
    p.add_argument("--calib", metavar="DATA", help="--int8: dataset whose train split (else val) calibrates: " + DATA_HELP)
    p.add_argument("--calib-images", type=int, default=64, metavar="N", help="--int8: calibration images (default 64)")
    _add_exist_ok(p, "replace the output file if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("benchmark", help="images/s against torchvision Mask R-CNN, in one process")
    p.add_argument("--sizes", nargs="+", default=["1333x800", "640x640"], help="WIDTHxHEIGHT ...")
    p.add_argument("--runs", type=_at_least(1), default=5, help="timed runs per entry (median reported)")
    p.add_argument("--warmup", type=_at_least(0), default=2)
    p.add_argument("--device", type=_device, default="cpu")
    p.add_argument("--no-fast", action="store_true", help="skip the bf16/fp16, channels-last and ONNX entries")
    p.add_argument("--weights", help="a trained checkpoint: adds its ONNX fp32 and INT8 rows with mask AP (needs --data)")
    p.add_argument("--data", help="--weights: dataset whose val split gives the AP and train split calibrates INT8")
    p.add_argument("--calib-images", type=int, default=64, metavar="N", help="--weights: INT8 calibration images")
    p.add_argument("--out", help="also write the markdown table to this file")
    _add_exist_ok(p, "replace the --out file if it exists")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("ablate", help="Table II / III: train and evaluate every variant over seeds")
    _add_config_args(p)
    p.add_argument("--data", required=True)
    p.add_argument("--table", type=int, choices=(2, 3), required=True)
    p.add_argument("--seeds", type=_at_least(1), default=3)
    p.add_argument("--epochs", type=_at_least(1), help="another schedule length (the lr steps scaled with it)")
    p.add_argument("--out", help="sweep folder (default runs/ablate/table<N>); rerun to resume")
    p.add_argument("--device", type=_device)
    p.add_argument("--jobs", type=_at_least(1), default=1, metavar="N",
                   help="train N runs at a time in child processes (small runs sharing one GPU or many cores)")
    p.add_argument("--rows", nargs="+", default=[], metavar="ROW",
                   help="only these rows, by folder name (fpn_baseline, csr, d2s, csr_d2s, csr_128, ...)")
    p.add_argument("--train-only", action="store_true",
                   help="stop once every run is trained; a later call without it writes the tables")
    _add_exist_ok(p, "retrain runs in --out that another sweep (other config or data) left there")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("demo", help="synthetic data -> train -> evaluate -> overlays, on the CPU")
    p.add_argument("--out", help="run folder (default runs/demo[N])")
    p.add_argument("--quick", action="store_true", help="a few iterations only (smoke test)")
    p.add_argument("--images", type=_at_least(5), default=None, help="synthetic images, 80%% train / 20%% val (default 1000, quick 12)")
    p.add_argument("--device", type=_device, default="cpu")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    _add_exist_ok(p, "replace the demo already in --out")
    p.set_defaults(func=cmd_demo)
    return parser


def _close_progress_bars() -> None:
    """End a progress bar an error cut short, so the error starts a line of its own."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        args.func(args)
    except TrainingInterrupted as exc:  # preempted: last.pt is written, exit as if killed by the signal
        _close_progress_bars()
        print(f"csrseg: {exc}", file=sys.stderr)
        return exc.exit_code
    except CsrsegError as exc:
        _close_progress_bars()
        print(f"csrseg: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused: an --out that is a file, a read-only folder, a full disk
        _close_progress_bars()
        print(f"csrseg: error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # only running out of memory is the user's to fix; a bug shows whole
        text = out_of_memory_text(exc)
        if text is None:
            raise
        _close_progress_bars()
        print(f"csrseg: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("csrseg: interrupted", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()
    return 0


def os_error_text(exc: OSError) -> str:
    """One line for a refused file operation: ``PATH: reason`` (``A -> B: reason`` for a rename)."""
    if exc.filename is None:
        return str(exc)
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename2 is None:
        return f"{exc.filename}: a file is in the way where a folder was needed (an --out or OUT that names a file?)"
    where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else str(exc.filename)
    return f"{where}: {exc.strerror or exc}"


def _size_text(size: float) -> str:
    """Bytes as the largest binary unit that keeps the number at least 1: ``2.5 GiB``, ``20.0 MiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def out_of_memory_text(exc: BaseException) -> str | None:
    """One line for an allocation the machine refused (CPU or CUDA), or ``None`` for any other error."""
    import re

    message = str(exc).lower()
    wanted = ""
    if not isinstance(exc, MemoryError):
        if "out of memory" not in message and "can't allocate memory" not in message and "not enough memory" not in message:
            return None
        size = re.search(r"allocate (\d+(?:\.\d+)?) ?(bytes|[kmgt]ib)", message)
        if size:
            scale = {"bytes": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}[size.group(2)]
            wanted = f" (one tensor of {_size_text(float(size.group(1)) * scale)} was asked for)"
    return (f"out of memory{wanted}: the model or batch is too large for this machine; lower train.batch_size or "
            "--batch, the input size (input.short_side / input.max_size) or the widths given with --set. Files "
            "already written are kept (a training run that saved a last.pt goes on with --resume)")


def _leave_process_group() -> None:
    """Under torchrun: leave the process group (nccl warns at exit about one left open)."""
    if "torch" in sys.modules:
        from csrseg.engine.distributed import cleanup

        cleanup()


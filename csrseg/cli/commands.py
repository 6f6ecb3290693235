"""One function per verb: the parsed options in, a call of the Python API (or a tool), the result printed.

No rule of a verb lives here: resume checks, output checks, sources and defaults are the API's
(:mod:`csrseg.api`, :mod:`csrseg.tools`), so Python callers meet the same ones.
"""

from __future__ import annotations

import argparse
import sys

from csrseg.cli.options import sources_from_args, tracker_from_args


def cmd_info(args: argparse.Namespace) -> None:
    from csrseg.tools.info import describe

    print(describe(args.config, args.overrides, args.height, args.width, args.depth))


def cmd_synth(args: argparse.Namespace) -> None:
    from csrseg.tools.synth import synthesize

    out = synthesize(args.out, args.images, args.seed, args.val_fraction, args.size, args.exist_ok)
    print(f"synthetic dataset written to {out} (annotations/instances_{{train,val}}.json, train/, val/)")


def cmd_train(args: argparse.Namespace) -> None:
    from csrseg.api import train
    from csrseg.evaluation.coco import format_table

    # a plain --data is resolved by train, after the config: a bad config is named first
    explicit = args.train_ann or args.train_images or args.val_ann or args.val_images
    data = sources_from_args(args) if explicit else args.data
    conveniences = [f"train.{key}={value}" for key, value in (("time_hours", args.time), ("ema", args.ema),
                                                             ("patience", args.patience)) if value is not None]
    result = train(data, config=args.config, out=args.out, overrides=[*args.overrides, *conveniences], device=args.device,
                   resume=args.resume or False,
                   weights=args.weights, strict=args.strict, train_split=args.train_split,
                   val_split=None if args.no_val else args.val_split, checkpoint_interval=args.checkpoint_interval,
                   log_interval=args.log_interval, exist_ok=args.exist_ok, layout=args.layout, loggers=args.logger)
    if result.metrics:
        print(format_table(result.metrics))
    print(f"run folder: {result.run_dir}  (last: {result.last.name}, best: {result.best.name if result.best else '-'}, "
          f"log.jsonl, results.png)")


def cmd_eval(args: argparse.Namespace) -> None:
    from csrseg.api import evaluate
    from csrseg.evaluation.coco import format_detailed

    from csrseg.api.predict import model_option

    model = model_option(args.weights, args.onnx, args.openvino)
    report = evaluate(model, data=args.data, split=args.split, ann=args.ann, images=args.images,
                      out=args.out, device=args.device, batch=args.batch, workers=args.workers, progress=True,
                      precision=args.precision, exist_ok=args.exist_ok, layout=args.layout, tile=args.tile,
                      overlap=args.overlap, compiled=args.compile, plots=not args.no_plots, evaluator=args.evaluator,
                      confusion_score_thr=args.confusion_score_thr)
    print(format_detailed(report))
    print(f"{report['images']} images of {report['annotations']}, {report['predictions']} predictions; "
          f"COCO results JSON: {report['results']}; metrics: {report['metrics']}"
          + (f"; pictures: {report['results'].removesuffix('.json')}.{{pr_mask,pr_box,confusion}}.png (data: "
             ".pr_curves.json, .confusion.json)" if "pictures" in report else ""))


def cmd_predict(args: argparse.Namespace) -> None:
    from csrseg.api import predict

    result = predict(args.sources, weights=args.weights, onnx=args.onnx, openvino=args.openvino, out=args.out, score_thr=args.score_thr, batch=args.batch, device=args.device,
                     precision=args.precision, video_stride=args.video_stride, data=args.data, exist_ok=args.exist_ok, layout=args.layout, tile=args.tile, overlap=args.overlap,
                     compiled=args.compile, track=tracker_from_args(args), watch=args.watch, max_frames=args.max_frames)
    counts = result.counts
    for reason in counts.skipped_files:
        print(f"skipped: {reason}", file=sys.stderr)
    done = [f"{counts.images} images"] + ([f"{counts.videos} videos ({counts.frames} frames)"] if counts.videos_given else [])
    below = ""
    if counts.instances == 0 and counts.below_threshold:
        below = (f" ({counts.below_threshold} below --score-thr {result.score_thr}, the highest scoring "
                 f"{counts.top_below:.3f})")
    print(", ".join(done) + f", {counts.instances} instances{below}"
          + (f", {counts.skipped} skipped" if counts.skipped else "") + (", tracked" if args.track else "")
          + (f", stopped by {counts.stopped_by}" if counts.stopped_by else "") + f"; overlays and predictions.json in {result.out_dir}")


def cmd_browse(args: argparse.Namespace) -> None:
    from csrseg.tools.browse import browse

    summary, out = browse(args.data, args.out, args.config, args.overrides, args.images, args.split, args.exist_ok,
                          args.layout)
    print(summary.text())
    print(f"{len(summary.drawn)} images with their annotations and summary.png in {out}")


def cmd_convert(args: argparse.Namespace) -> None:
    from csrseg.tools.convert import convert

    result = convert(args.format, args.src, args.out, args.copy, args.class_attr, args.val_fraction, args.exist_ok)
    for what, count in result.skipped.items():
        print(f"{count} {what}", file=sys.stderr)
    print(f"{args.format} -> COCO: {result.counts()}; {len(result.names)} classes; written to {result.out} "
          f"(annotations/instances_<split>.json, images {'copied' if args.copy else 'linked'}); "
          f"train with: csrseg train --data {result.out}")


def cmd_export(args: argparse.Namespace) -> None:
    from csrseg.api import export

    result = export(args.out, weights=args.weights, format=args.format, opset=args.opset, int8=args.int8, calib=args.calib, calib_images=args.calib_images,
                    exist_ok=args.exist_ok, layout=args.layout)
    if result.format == "openvino":
        kind = (f"INT8 (NNCF, {result.int8['nodes']} conv/matrix ops quantized, calibrated on "
                f"{result.int8['calibration_images']} images of {args.calib})" if result.int8 else "fp32")
        print(f"OpenVINO IR, {kind}, written to {result.path} and {result.path.with_suffix('.bin')}; "
              f"run it with: csrseg predict --openvino {result.path} IMAGES")
    elif result.int8 is not None:
        report = result.int8
        print(f"INT8 ONNX model (QDQ, {report.quantized} conv/matrix ops quantized, {report.kept_fp32} left in fp32, "
              f"calibrated on {report.images} images of {args.calib}) written to {report.path}; "
              f"run it with: csrseg predict --onnx {report.path} IMAGES")
    elif result.format == "onnx":
        print(f"ONNX model (opset {result.opset}, checked with onnx.checker) written to {result.path}; "
              f"run it with: csrseg predict --onnx {result.path} IMAGES")
    else:
        print(f"safetensors weights written to {result.path}")


def cmd_benchmark(args: argparse.Namespace) -> None:
    from csrseg.research.benchmark import benchmark

    print(benchmark(args.sizes, runs=args.runs, warmup=args.warmup, device=args.device, fast_paths=not args.no_fast,
                    weights=args.weights, data=args.data, calib_images=args.calib_images, out=args.out,
                    exist_ok=args.exist_ok, openvino=args.openvino))


def cmd_ablate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from csrseg.research.ablate import Sweep, default_sweep_dir, run_ablation

    out = Path(args.out) if args.out else default_sweep_dir(args.table)
    sweep = Sweep(args.table, base=args.config, seeds=args.seeds, epochs=args.epochs, overrides=tuple(args.overrides),
                  rows=tuple(args.rows or ()), recipe=args.recipe)
    text = run_ablation(args.data, sweep, out, device=args.device, exist_ok=args.exist_ok, jobs=args.jobs,
                        train_only=args.train_only)
    print(text)
    if not args.train_only:
        print(f"table and plot: {out / f'table{args.table}.md'}, {out / f'table{args.table}.png'}")


def cmd_demo(args: argparse.Namespace) -> None:
    from csrseg.errors import CsrsegError
    from csrseg.research.demo import SHORT_MINUTES, run_demo

    if args.minutes is not None and (args.full or args.quick):
        raise CsrsegError("--minutes is the short demo's training time: it does not go with --full or --quick")
    if args.minutes is not None and not args.minutes > 0:
        raise CsrsegError(f"--minutes {args.minutes}: must be above 0")
    recipe = "quick" if args.quick else ("full" if args.full else "short")
    print(run_demo(args.out, recipe=recipe, minutes=args.minutes or SHORT_MINUTES, images=args.images,
                   device=args.device, overrides=args.overrides, exist_ok=args.exist_ok))


def cmd_serve(args: argparse.Namespace) -> None:
    from csrseg.serve.options import ServeOptions
    from csrseg.serve.server import prepare

    options = ServeOptions(weights=args.weights, onnx=args.onnx, openvino=args.openvino, device=args.device,
                           precision=args.precision, score_thr=args.score_thr, tile=args.tile, overlap=args.overlap,
                           classes=args.classes, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                           max_bytes=args.max_bytes, max_pixels=args.max_pixels, data=args.data, layout=args.layout,
                           compiled=args.compile)
    server = prepare(options, host=args.host, port=args.port, workers=args.workers)
    print(server.describe(), flush=True)
    server.run()

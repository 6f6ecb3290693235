"""The ``csrseg`` command line: one sub-command per verb, each ending in a call of :mod:`csrseg.cli.commands`."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from csrseg.cli import commands
from csrseg.api.export import FORMATS as EXPORT_FORMATS
from csrseg.evaluation.backends import EVALUATORS
from csrseg.runtime.precision import CHOICES as PRECISIONS
from csrseg.cli.options import (
    DATA_HELP,
    above_zero,
    add_config_args,
    add_data_args,
    add_exist_ok,
    add_layout,
    add_streams,
    add_tiling,
    add_tracking,
    at_least,
    boolean,
    device,
    fraction,
    names,
    non_negative,
    port_number,
)

PRECISION_CHOICES = PRECISIONS
COMPILE_HELP = ("a checkpoint's network through torch.compile (needs g++): a compile of some seconds per "
                "precision and input size first; pays in bf16 (1.6x eager at 1333x800 on an AMX Xeon), not in fp32")
PRECISION_HELP = ("network precision: fp32 (default: exact, the same AP on every machine), bf16, fp16 (CUDA), or "
                  "auto (CUDA: bf16 where the GPU has it; CPU: the faster of fp32 and bf16, measured once per machine); "
                  "an OpenVINO model takes fp32, bf16 or auto, an ONNX model fp32 only")
OPENVINO_HELP = ("an OpenVINO IR (.xml, its .bin beside it) written by csrseg export --format openvino (fp32 or --int8), "
                 "run by OpenVINO on the CPU; needs pip install 'csrseg[openvino]'")


class OneLineParser(argparse.ArgumentParser):
    """An option the user got wrong is one line, ``csrseg: error: ...`` and status 2, as every other
    error of csrseg: not argparse's usage block (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.removeprefix("csrseg").strip()
        where = f" ({verb})" if verb else ""
        self.exit(2, f"csrseg: error: {message}{where}; see csrseg {verb + ' ' if verb else ''}--help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="csrseg", description=sys.modules["csrseg.cli"].__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging (libraries' own notes too)")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=OneLineParser)

    p = sub.add_parser("info", help="module tree, parameter counts, GFLOPs")
    add_config_args(p)
    p.add_argument("--height", type=at_least(1), default=800)
    p.add_argument("--width", type=at_least(1), default=1333)
    p.add_argument("--depth", type=at_least(0), default=2, help="module tree depth")
    p.set_defaults(func=commands.cmd_info)

    p = sub.add_parser("synth", help="write a synthetic COCO-format dataset")
    p.add_argument("out")
    p.add_argument("--images", type=at_least(1), default=500, help="total images (train + val)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=at_least(32), default=256, help="image side in pixels (at least 32)")
    p.add_argument("--val-fraction", type=fraction, default=0.2, help="share of images for val (at least one image)")
    add_exist_ok(p, "replace a dataset already in OUT")
    p.set_defaults(func=commands.cmd_synth)

    p = sub.add_parser("train", help="train on a COCO-format dataset (torchrun for DDP)")
    add_config_args(p, "paper")
    p.set_defaults(config=None)  # to tell a --config given with --resume from the default (paper)
    add_data_args(p)
    p.add_argument("--out", help="run folder (default runs/train/<config>[N])")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt, on the dataset it "
                   "recorded (--data: another place)")
    p.add_argument("--weights", help="initial weights (fine-tuning)")
    p.add_argument("--strict", type=boolean, default=True,
                   help="--strict false loads only the tensors that fit (e.g. another class count)")
    p.add_argument("--device", type=device, help="auto (the default: cuda if available, else cpu), cpu, cuda, cuda:1")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--no-val", action="store_true", help="skip evaluation")
    p.add_argument("--logger", metavar="NAMES", help="comma-separated: tensorboard (written whenever installed; naming it "
                   "makes it required), wandb, mlflow (the [wandb] / [mlflow] extras), each fed the rows of log.jsonl")
    p.add_argument("--checkpoint-interval", type=at_least(0), default=0, help="also save last.pt every N iterations")
    p.add_argument("--log-interval", type=at_least(1), default=10, help="log.jsonl row every N iterations")
    p.add_argument("--time", type=above_zero, metavar="HOURS", help="a time budget (train.time_hours): the lr follows "
                   "half a cosine over it and the run ends when it is spent, or at its own end if that comes first")
    p.add_argument("--ema", type=fraction, nargs="?", const=0.9998, metavar="DECAY",
                   help="keep a moving average of the weights (train.ema; 0.9998 when no DECAY), evaluated and saved as the model")
    p.add_argument("--patience", type=at_least(1), metavar="N",
                   help="stop after N evaluations in a row without a better mask AP (train.patience)")
    add_exist_ok(p, "replace the run already in --out (its checkpoints and log wait in --out/replaced/ until the new run finishes)")
    p.set_defaults(func=commands.cmd_train)

    p = sub.add_parser("eval", help="COCO mask AP of a checkpoint or an exported ONNX model")
    p.add_argument("--weights", help="checkpoint (.pt or .safetensors)")
    p.add_argument("--onnx", help="an ONNX model written by csrseg export (fp32 or --int8), run by onnxruntime")
    p.add_argument("--openvino", metavar="MODEL.xml", help=OPENVINO_HELP)
    p.add_argument("--data", help=DATA_HELP)
    p.add_argument("--split", default="val", help="split to score: val, test, or a split's own name")
    p.add_argument("--ann", help="annotation file to score (instead of --data's split)")
    p.add_argument("--images", help="image folder, if not the split's own (e.g. test2017 for test-dev)")
    add_layout(p)
    p.add_argument("--out", help="COCO results JSON (default: results_<split>.json beside the weights or model)")
    p.add_argument("--device", type=device)
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32", help=PRECISION_HELP)
    p.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    p.add_argument("--batch", type=at_least(1), default=2)
    p.add_argument("--workers", type=at_least(0), default=2)
    add_tiling(p)
    p.add_argument("--no-plots", action="store_true", help="skip the precision-recall curves and the confusion matrix "
                   "(PNG + JSON beside the report)")
    p.add_argument("--evaluator", choices=EVALUATORS, default="auto", help="COCOeval of pycocotools or of "
                   "faster-coco-eval (faster; pip install 'csrseg[fasteval]'); auto: faster where installed")
    p.add_argument("--confusion-score-thr", type=fraction, default=0.3, metavar="SCORE",
                   help="the confusion matrix counts predictions scoring at least this (default 0.3, predict's)")
    add_exist_ok(p, "replace an existing --out and its .metrics.json; the default results_<split>.json beside the "
                    "model is always renewed")
    p.set_defaults(func=commands.cmd_eval)

    # track is predict with --track on. Each gets its own copy of the arguments: argparse's parents=
    # share the action objects, so the track parser's default track=True became predict's default too.
    for name, help_text, tracking in (("predict", "overlays and COCO-style JSON for images and videos", False),
                                      ("track", "predict with an identity per object across video frames: "
                                                "predict --track", True)):
        p = sub.add_parser(name, help=help_text)
        _predict_arguments(p)
        p.set_defaults(func=commands.cmd_predict, track=tracking)

    p = sub.add_parser("browse", help="ground truth drawn on images, class counts and object sizes at the input size")
    p.add_argument("data", help=DATA_HELP)
    add_config_args(p)
    p.add_argument("--out", help="output folder (default runs/browse/exp[N])")
    p.add_argument("--images", type=at_least(1), default=16, help="images to draw")
    p.add_argument("--split", default="train")
    add_layout(p)
    add_exist_ok(p, "draw into an --out that already holds a browse")
    p.set_defaults(func=commands.cmd_browse)

    p = sub.add_parser("convert", help="YOLO-seg, LabelMe or VIA annotations -> a COCO dataset (ROOT layout)")
    p.add_argument("format", choices=("yolo", "labelme", "via"))
    p.add_argument("src", help="yolo: folder with data.yaml; labelme: folder of .json; via: the exported .json")
    p.add_argument("out", help="output dataset folder")
    p.add_argument("--copy", action="store_true", help="copy the images (default: symbolic links)")
    p.add_argument("--class-attr", default="class", help="via: the region attribute that holds the class")
    p.add_argument("--val-fraction", type=fraction, default=0.2,
                   help="labelme/via without train/val folders: share of images (by file name) for val")
    add_exist_ok(p, "replace a dataset already in OUT")
    p.set_defaults(func=commands.cmd_convert)

    p = sub.add_parser("export", help="ONNX or OpenVINO IR (whole pipeline), or safetensors (weights)")
    p.add_argument("out", help="output file")
    p.add_argument("--weights", required=True)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx",
                   help="onnx (onnxruntime), openvino (model.xml + model.bin; needs the [openvino] extra), safetensors")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--int8", action="store_true",
                   help="the network quantized to INT8 (static, per-channel; ONNX: QDQ, OpenVINO: NNCF); resize and "
                        "post-processing stay fp32")
    p.add_argument("--calib", metavar="DATA", help="--int8: dataset whose train split (else val) calibrates: " + DATA_HELP)
    p.add_argument("--calib-images", type=int, default=64, metavar="N", help="--int8: calibration images (default 64)")
    add_layout(p)
    add_exist_ok(p, "replace the output file if it exists")
    p.set_defaults(func=commands.cmd_export)

    p = sub.add_parser("benchmark", help="images/s against torchvision Mask R-CNN, in one process")
    p.add_argument("--sizes", nargs="+", default=["1333x800", "640x640"], help="WIDTHxHEIGHT ...")
    p.add_argument("--runs", type=at_least(1), default=5, help="timed runs per entry (median reported)")
    p.add_argument("--warmup", type=at_least(0), default=2)
    p.add_argument("--device", type=device, default="cpu")
    p.add_argument("--no-fast", action="store_true", help="skip the bf16/fp16, channels-last and ONNX entries")
    p.add_argument("--weights", help="a trained checkpoint: adds its ONNX (and, with the [openvino] extra, OpenVINO) "
                                     "fp32 and INT8 rows with mask AP (needs --data)")
    p.add_argument("--openvino", metavar="MODEL.xml", help="an exported OpenVINO IR: adds its rows in each precision "
                                                           "OpenVINO runs it in here (mask AP with --data)")
    p.add_argument("--data", help="--weights/--openvino: dataset whose val split gives the AP (and whose train split "
                                  "calibrates --weights' INT8)")
    p.add_argument("--calib-images", type=int, default=64, metavar="N", help="--weights: INT8 calibration images")
    p.add_argument("--out", help="also write the markdown table to this file")
    add_exist_ok(p, "replace the --out file if it exists")
    p.set_defaults(func=commands.cmd_benchmark)

    p = sub.add_parser("ablate", help="Table II / III: train and evaluate every variant over seeds")
    add_config_args(p)
    p.add_argument("--data", help="dataset (any layout train takes); --recipe cpu without it: the demo's 1000 "
                                  "synthetic images, made in OUT/data")
    p.add_argument("--recipe", choices=("paper", "cpu"), default="paper",
                   help="paper: the preset's own training (GPUs); cpu: ResNet-18 from scratch, 64 wide, 128 px, "
                        "1200 iterations, about 12 min a run on 2 cores with --jobs 2 (K-Net's head, or the SOLOv2 "
                        "head's rows with --config paper-solov2)")
    p.add_argument("--table", type=int, choices=(2, 3), required=True)
    p.add_argument("--seeds", type=at_least(1), default=3)
    p.add_argument("--epochs", type=at_least(1), help="another schedule length (the lr steps scaled with it)")
    p.add_argument("--out", help="sweep folder (default runs/ablate/table<N>); rerun to resume")
    p.add_argument("--device", type=device)
    p.add_argument("--jobs", type=at_least(1), default=1, metavar="N",
                   help="train N runs at a time in child processes (small runs sharing one GPU or many cores); "
                        "SIGTERM or Ctrl-C stops each after its step with last.pt written")
    p.add_argument("--rows", nargs="+", default=[], metavar="ROW",
                   help="only these rows, by folder name (fpn_baseline, csr, d2s, csr_d2s, csr_128, ...)")
    p.add_argument("--train-only", action="store_true",
                   help="stop once every run is trained; a later call without it writes the tables")
    add_exist_ok(p, "retrain runs in --out that another sweep (other config or data) left there")
    p.set_defaults(func=commands.cmd_ablate)

    p = sub.add_parser("demo", help="synthetic data -> train -> evaluate -> overlays (about 12 minutes on a 2-core CPU)")
    p.add_argument("--out", help="run folder (default runs/demo[N])")
    p.add_argument("--full", action="store_true",
                   help="the whole 18-epoch recipe at 256 px instead of 9 minutes of training (mask AP about 50; "
                        "77 min on a 2-core AVX2 CPU, about 4 on a GPU)")
    p.add_argument("--minutes", type=float, default=None, metavar="M",
                   help="the short demo's training time (default 9)")
    p.add_argument("--quick", action="store_true", help="a few iterations only (smoke test)")
    p.add_argument("--images", type=at_least(5), default=None, help="synthetic images, 80%% train / 20%% val (default 1000, quick 12)")
    p.add_argument("--device", type=device, default=None, help="auto (the default: cuda if available, else cpu), cpu, cuda")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE")
    add_exist_ok(p, "replace the demo already in --out")
    p.set_defaults(func=commands.cmd_demo)

    add_serve(sub)
    return parser


def add_serve(sub) -> None:
    """``csrseg serve``: a model over HTTP (:mod:`csrseg.serve`)."""
    from csrseg.serve.options import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

    p = sub.add_parser("serve", help="a model over HTTP: POST /predict, a page at /, batching (needs the [serve] extra)")
    p.add_argument("--weights", help="checkpoint (.pt or .safetensors)")
    p.add_argument("--onnx", help="an ONNX model written by csrseg export (fp32 or --int8), run by onnxruntime")
    p.add_argument("--openvino", metavar="MODEL.xml", help=OPENVINO_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    p.add_argument("--port", type=port_number, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--workers", type=at_least(1), default=1, metavar="N",
                   help="N server processes, each with its own model and a share of the cores (default 1)")
    p.add_argument("--max-batch", type=at_least(1), default=8, metavar="N",
                   help="concurrent requests gathered into one network pass of up to N images (default 8)")
    p.add_argument("--max-wait-ms", type=non_negative, default=10.0, metavar="MS",
                   help="how long a batch waits for company after its first image (default 10)")
    p.add_argument("--max-bytes", type=at_least(1), default=DEFAULT_MAX_BYTES, metavar="N",
                   help=f"the largest upload, in bytes (default {DEFAULT_MAX_BYTES}; larger: 413)")
    p.add_argument("--max-pixels", type=at_least(1), default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"the largest image, width x height (default {DEFAULT_MAX_PIXELS}, Pillow's bomb limit; larger: 413)")
    p.add_argument("--score-thr", type=fraction, default=0.3, help="default threshold of a request (default 0.3; "
                   "query score_thr=)")
    p.add_argument("--classes", type=names, default=(), metavar="A,B",
                   help="only these classes, by name, unless a request asks otherwise (query classes=)")
    p.add_argument("--data", help="take the class names from this dataset (folder or YAML), by category id")
    add_layout(p)
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32", help=PRECISION_HELP)
    p.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    p.add_argument("--device", type=device)
    add_tiling(p)
    p.set_defaults(func=commands.cmd_serve)


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``predict`` (and of ``track``, which is ``predict --track``)."""
    p.add_argument("sources", nargs="+", help="images, videos (.mp4 .avi .mov .mkv ...), folders or glob patterns; "
                   "or one camera index (0), stream URL (rtsp://, http://) or --watch folder")
    p.add_argument("--weights", help="checkpoint (.pt or .safetensors)")
    p.add_argument("--onnx", help="run an exported ONNX model with onnxruntime instead")
    p.add_argument("--openvino", metavar="MODEL.xml", help=OPENVINO_HELP)
    p.add_argument("--out", help="output folder (default runs/predict/exp[N])")
    p.add_argument("--score-thr", type=fraction, help="instances scoring below are left out (default 0.3; tracking: "
                   "--track-low, for ByteTrack's second stage)")
    p.add_argument("--data", help="take the class names drawn from this dataset (folder or YAML), by category id")
    add_layout(p)
    p.add_argument("--video-stride", type=at_least(1), default=1, metavar="N", help="videos: predict every N-th frame")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="fp32", help=PRECISION_HELP)
    p.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    p.add_argument("--device", type=device)
    p.add_argument("--batch", type=at_least(1), default=1)
    add_tiling(p)
    add_exist_ok(p, "write into an --out that already holds predictions (they are replaced)")
    add_tracking(p)
    add_streams(p)

"""Speed benchmark: csrseg against the model users would otherwise pick, in one process.

Every entry runs on the same input image, batch 1, post-processing included,
warm-up excluded; the figure is the median of ``runs`` timed runs. The entries of one
input size take turns, one run each per round (:func:`interleaved_times`), so a drift
in the machine's load (another process, a GPU's clocks) falls on all of them alike
instead of on whichever was timed while it lasted; they are all held in memory at
once for that. To compare
like with like, every model works at its maximum load: our post-processing
keeps every candidate (score threshold 0, so Matrix NMS sees ``nms_pre`` = 500
masks and 100 masks are drawn), and Mask R-CNN keeps every box (score threshold
0, so its mask head runs on 100 detections) - random weights would otherwise
let both skip their heads. Peak memory is the rise of the process's peak RSS
(``VmHWM``, reset between entries) on the CPU, ``max_memory_allocated`` on CUDA, over an
entry's warm-up runs, one entry at a time.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from csrseg.config import Config, load_config, without_pretrained
from csrseg.outputs import check_output_file
from csrseg.errors import CsrsegError
from csrseg.data.transforms import collate, normalize
from csrseg.runtime.cpu import cpu_description, cuda_half_precision, native_bf16
from csrseg.tools.info import count_flops, count_params
from csrseg.models import CSRSeg, build_model
from csrseg.engine.checkpoint import load_trained_model
from csrseg.inference.predictor import Predictor, for_inference, require_compiler


MASK_RCNN = "Mask R-CNN R50-FPN (torchvision)"


@dataclass
class Row:
    name: str
    size: tuple[int, int]  # (H, W) of the input image
    seconds: float  # median seconds per image
    params: float  # millions
    gflops: float  # network FLOPs of one image (post-processing not counted)
    peak_mb: float
    ap: float | None = None  # mask AP of a trained checkpoint, where one was given
    note: str = ""  # in the AP column where there is no AP (e.g. "random weights: speed only")
    precision: str = "fp32"  # what its matrix products compute in (fp32, bf16, int8): its peak in the share column

    @property
    def fps(self) -> float:
        return 1.0 / self.seconds


@dataclass
class Entry:
    """One row to time: ``step`` runs one inference on the size's image."""

    name: str
    step: Callable[[], object]
    params: float  # millions
    gflops: float  # network FLOPs of one image (nan where not counted)
    device: torch.device
    ap: float | None = None
    note: str = ""
    precision: str = "fp32"  # fp32, bf16 or int8 (see Row)


def time_entries(entries: list[Entry], size: tuple[int, int], runs: int, warmup: int) -> list[Row]:
    """Rows of ``entries`` on one input ``size`` (H, W): each entry's peak memory over its ``warmup``
    runs (at least one), one entry at a time; then ``runs`` rounds in which the entries take turns,
    and each row's seconds are the median of its ``runs`` times."""
    peaks = {}
    for entry in entries:
        with PeakMemory(entry.device) as mem:
            for _ in range(max(1, warmup)):
                entry.step()
        peaks[entry.name] = mem.mb
    names = [e.name for e in entries]
    assert len(set(names)) == len(names), f"two entries share a name: {names}"
    sync_on = next((e.device for e in entries if e.device.type == "cuda"), torch.device("cpu"))
    times = interleaved_times({e.name: e.step for e in entries}, runs, sync_on, warmup_rounds=0)
    return [Row(e.name, size, statistics.median(times[e.name]), e.params, e.gflops, peaks[e.name], e.ap, e.note,
                e.precision) for e in entries]


def median_time(fn: Callable[[], object], runs: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def interleaved_times(fns: dict[str, Callable[[], object]], rounds: int, device: torch.device,
                      warmup_rounds: int = 1) -> dict[str, list[float]]:
    """Seconds of each function in each of ``rounds`` rounds, the functions taking turns within every
    round (after ``warmup_rounds`` untimed ones), so drifting machine load falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_index in range(rounds + warmup_rounds):
        for name, fn in fns.items():
            seconds = median_time(fn, 1, 0, device)
            if round_index >= warmup_rounds:
                times[name].append(seconds)
    return times


def padded_input(size: tuple[int, int], device: torch.device | str = "cpu", divisor: int = 32) -> torch.Tensor:
    """A random ``(1, 3, H, W)`` batch of ``size`` padded up to multiples of ``divisor``, as collate pads."""
    return torch.randn(1, 3, -(-size[0] // divisor) * divisor, -(-size[1] // divisor) * divisor, device=device)


def matmul_gflops(device: torch.device, n: int = 4096, runs: int = 5, precision: str = "fp32") -> float:
    """Measured matrix-multiply throughput of this process in ``precision`` (``fp32``, ``bf16``, or
    ``int8``: int8 inputs, int32 sums, :func:`torch._int_mm`), in GFLOP/s (GOP/s for int8): the
    machine's practical limit for rows computing in that precision (AVX-512, VNNI, AMX alike)."""
    if precision == "int8":
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        fn = lambda: torch._int_mm(a, b)  # noqa: E731
    else:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        fn = lambda: a @ b  # noqa: E731
    seconds = median_time(fn, runs, 2, device)
    return 2 * n**3 / seconds / 1e9


def matmul_peaks(device: torch.device) -> dict[str, float]:
    """:func:`matmul_gflops` of each precision rows on this ``device`` compute in (CPU: fp32, bf16 where the CPU
    computes it, int8; CUDA: fp32, bf16, fp16), the measured peak that the share column of those rows divides by."""
    peaks = {}
    # an emulated bf16 product (no AVX512-BF16 or AMX) is no peak, and 4096^3 of it takes minutes
    cpu = ("fp32", "bf16", "int8") if native_bf16() else ("fp32", "int8")
    for name in cpu if device.type == "cpu" else ("fp32", "bf16", "fp16"):
        try:
            peaks[name] = matmul_gflops(device, precision=name)
        except RuntimeError:  # an int8 or bf16 matrix product this build or device does not have
            continue
    return peaks


class PeakMemory:
    """Peak memory rise of the code run inside, in MB."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            _release_freed_memory()
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            except OSError:
                pass
            self.base = _vm("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        else:
            self.mb = max(0.0, _vm("VmHWM") - self.base)


def _release_freed_memory() -> None:
    """Give memory freed by earlier entries back to the OS (glibc), or it would be reused
    without raising the RSS and the next entry's peak would read too low."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _vm(key: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def full_load(cfg: Config) -> Config:
    """``cfg`` with post-processing keeping every candidate (see the module docstring)."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head=cfg.model.head.at_full_load()))


def ours_step(cfg: Config, image: torch.Tensor, device: torch.device, precision: str = "fp32",
              channels_last: bool = False, predict_path: bool = False,
              compiled: bool = False) -> tuple[Callable[[], object], CSRSeg]:
    """One inference of ``cfg``'s model (random weights, full load) on ``image`` ``(3, H, W)`` (0-255):
    normalise, pad, then the predictor's own path (:meth:`~csrseg.inference.predictor.Predictor.run_batch`:
    network in ``precision``, post-processing); and the model. ``predict_path``: the model as
    ``predict`` loads a checkpoint (:func:`~csrseg.inference.predictor.for_inference`: BatchNorm
    folded, channels-last), else as built (channels-last if asked): the paper's comparison of networks.
    ``compiled``: the network through ``torch.compile``, compiled by the first call (a warm-up)."""
    cfg = full_load(cfg)
    model = build_model(without_pretrained(cfg)).to(device).eval()
    if predict_path:
        model = for_inference(model)
    elif channels_last:
        model = model.to(memory_format=torch.channels_last)
    size = tuple(image.shape[-2:])
    predictor = Predictor.for_model(model, cfg, [], [], device, precision, compiled=compiled)  # "auto": decided on the first step
    image = image.to(device)  # where Mask R-CNN's input is too: both pay for normalising on the device
    no_masks = torch.zeros(0, *size, device=device)

    def step() -> object:
        batch, _ = collate([dict(image=normalize(image, cfg.input), masks=no_masks)])
        return predictor.run_batch(batch, [size], [size])

    step.predictor = predictor
    return step, model


def ours_entry(cfg: Config, image: torch.Tensor, device: torch.device, precision: str = "fp32",
               channels_last: bool = False, name: str | None = None, predict_path: bool = False,
               compiled: bool = False) -> Entry:
    """Our model on ``image`` ``(3, H, W)`` (0-255): normalise, pad, network, post-processing
    (``predict_path``, ``compiled``: :func:`ours_step`'s)."""
    step, model = ours_step(cfg, image, device, precision, channels_last, predict_path, compiled)
    flops = count_flops(model, padded_input(tuple(image.shape[-2:]), device))
    name = name or cfg.name
    if precision == "auto":  # the predictor's own decision, timed on this step: said in the row's name
        step()
        chosen = step.predictor.precision
        precision, name = chosen.name, f"{name} ({chosen.name}: {chosen.reason})"
    return Entry(name, step, count_params(model), flops, device, precision=precision)


def maskrcnn_step(image: torch.Tensor, device: torch.device) -> tuple[Callable[[], object], nn.Module]:
    """One inference of torchvision's ``maskrcnn_resnet50_fpn`` (random weights, 81 classes, all 100
    detections kept) on ``image`` ``(3, H, W)`` (0-255); and the model."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    size = tuple(image.shape[-2:])
    # its own transform would rescale to 800 px; make it keep the size every entry gets
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=81, box_score_thresh=0.0,
                                  min_size=min(size), max_size=max(size)).to(device).eval()
    inputs = [(image / 255).to(device)]

    @torch.no_grad()
    def step() -> object:
        return model(inputs)

    return step, model


def maskrcnn_entry(image: torch.Tensor, device: torch.device) -> Entry:
    """torchvision's ``maskrcnn_resnet50_fpn``, random weights, 81 classes, all 100 detections kept."""
    step, model = maskrcnn_step(image, device)
    with torch.no_grad():
        flops = count_flops(_MaskRCNNNetwork(model).eval(), image[None].to(device) / 255)
    return Entry(MASK_RCNN, step, count_params(model), flops, device)


class _MaskRCNNNetwork(nn.Module):
    """Wraps Mask R-CNN so the FLOP counter sees a tensor in, detections out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> object:
        return self.model(list(images))


def onnx_file(cfg: Config, size: tuple[int, int], out: Path, int8: bool = False, model: CSRSeg | None = None,
              calib: list | None = None) -> Path:
    """``model`` (default: ``cfg``'s with random weights) exported by :func:`csrseg.deploy.onnx.export_onnx`,
    its input resize set to ``size`` (H, W) so the graph sees the pixels the eager entries see (the
    config's own resize would turn a 640x640 image into 800x800: 1.56x the work, which is what made
    ONNX look slower than eager at 640x640). ``int8``: quantized with
    :func:`csrseg.deploy.int8.quantize_onnx`, calibrated on ``calib`` (default: 4 random images)."""
    from csrseg.deploy.onnx import export_onnx

    input_cfg = dataclasses.replace(cfg.input, short_side=min(size), max_size=max(size))
    model = model if model is not None else build_model(without_pretrained(cfg)).eval()
    path = export_onnx(model, input_cfg, out.with_suffix(".fp32.onnx") if int8 else out, sample_size=size)
    if not int8:
        return path
    from csrseg.deploy.int8 import quantize_onnx

    if calib is None:
        rng = np.random.default_rng(0)
        calib = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(4)]
    return quantize_onnx(path, out, calib).path


def onnx_step(path: Path, image: torch.Tensor) -> Callable[[], object]:
    """One inference of the ONNX model at ``path`` on ``image`` ``(3, H, W)`` (0-255), through the
    session settings :class:`csrseg.inference.onnx_predictor.OnnxPredictor` uses, on torch's thread count."""
    from csrseg.inference.onnx_predictor import onnx_session

    session = onnx_session(path, threads=torch.get_num_threads())
    feed = {"image": image.round().clamp(0, 255).to(torch.uint8)[None].numpy()}
    return lambda: session.run(None, feed)


def onnx_entry(cfg: Config, image: torch.Tensor, tmp_dir: Path, int8: bool = False, name: str | None = None,
               note: str = "") -> Entry:
    """Our model exported by :func:`csrseg.deploy.onnx.export_onnx` (``int8``: and quantized), run by ONNX
    Runtime on the CPU."""
    cfg = full_load(cfg)
    size = tuple(image.shape[-2:])
    model = build_model(without_pretrained(cfg)).eval()
    path = onnx_file(cfg, size, tmp_dir / f"{cfg.name}{'_int8' if int8 else ''}.onnx", int8=int8, model=model)
    return Entry(name or f"{cfg.name} (ONNX Runtime{', INT8' if int8 else ''})", onnx_step(path, image),
                 count_params(model), count_flops(model, padded_input(size)), torch.device("cpu"), note=note,
                 precision="int8" if int8 else "fp32")


def compiler_here() -> bool:
    """Whether torch.compile can build CPU code here (a C++ compiler on PATH)."""
    try:
        require_compiler()
    except CsrsegError:
        return False
    return True


def openvino_installed() -> bool:
    """Whether OpenVINO and NNCF (the ``[openvino]`` extra) are importable here."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("openvino", "nncf"))


def openvino_precisions() -> tuple[str, ...]:
    """The precisions OpenVINO's CPU plugin runs an fp32 IR in here: fp32, and bf16 where the CPU computes it."""
    import openvino

    from csrseg.inference.openvino_predictor import cpu_computes_bf16

    return ("fp32", "bf16") if cpu_computes_bf16(openvino.Core()) else ("fp32",)


def openvino_step(xml: Path, image: torch.Tensor, precision: str = "fp32") -> Callable[[], object]:
    """One inference of the IR at ``xml`` on ``image`` ``(3, H, W)`` (0-255), compiled as
    :class:`csrseg.inference.openvino_predictor.OpenVinoPredictor` compiles it for ``precision``, on
    torch's thread count."""
    from csrseg.inference.openvino_predictor import OpenVinoPredictor

    predictor = OpenVinoPredictor(xml, score_thr=0.0, precision=precision, threads=torch.get_num_threads())
    feed = image.round().clamp(0, 255).to(torch.uint8)[None].numpy()
    predictor.compiled(precision)
    return lambda: predictor.run_graph(feed)


def openvino_entries(cfg: Config, image: torch.Tensor, tmp_dir: Path) -> list[Entry]:
    """Our model (random weights, full load) exported to ONNX, converted to an OpenVINO IR, and run by
    OpenVINO in fp32, in bf16 where the CPU computes it, and quantized to INT8 by NNCF (calibrated on
    4 random images: speed only)."""
    from csrseg.deploy.openvino import export_openvino, quantize_openvino

    cfg = full_load(cfg)
    size = tuple(image.shape[-2:])
    model = build_model(without_pretrained(cfg)).eval()
    onnx_path = onnx_file(cfg, size, tmp_dir / f"{cfg.name}_ov.onnx", model=model)
    fp32 = export_openvino(onnx_path, tmp_dir / f"{cfg.name}_ov.xml")
    rng = np.random.default_rng(0)
    int8 = tmp_dir / f"{cfg.name}_ov_int8.xml"
    quantize_openvino(onnx_path, int8, [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(4)])
    params, flops = count_params(model), count_flops(model, padded_input(size))
    cpu = torch.device("cpu")
    entries = [Entry(f"{cfg.name} (OpenVINO {p})", openvino_step(fp32, image, p), params, flops, cpu, precision=p)
               for p in openvino_precisions()]
    entries.append(Entry(f"{cfg.name} (OpenVINO INT8)", openvino_step(int8, image), params, flops, cpu,
                         note="random weights: speed only", precision="int8"))
    return entries


@dataclass
class CheckpointModel:
    """A trained checkpoint exported to ONNX or OpenVINO, with its mask AP when run in ``precision``."""

    name: str
    path: Path
    params: float
    ap: float | None  # None: no data to score on (speed only)
    precision: str = "fp32"  # the OpenVINO execution precision (an ONNX model runs as exported)
    int8: bool = False

    def step(self, image: torch.Tensor) -> Callable[[], object]:
        if self.path.suffix == ".xml":
            return openvino_step(self.path, image, self.precision)
        return onnx_step(self.path, image)


def checkpoint_models(weights: str | Path, data: str | Path, tmp_dir: Path, calib_images: int = 64) -> list[CheckpointModel]:
    """A trained checkpoint as ONNX fp32 and INT8 (calibrated on ``data``'s train split) and, where the
    ``[openvino]`` extra is installed, as OpenVINO fp32 (and bf16 where the CPU computes it) and NNCF
    INT8 on the same images, each with its mask AP on ``data``'s val split (:func:`csrseg.api.evaluate`,
    the model's own input size and thresholds). They are timed on the benchmark image of each size
    with their own thresholds (a trained model's load)."""
    from csrseg.api import evaluate
    from csrseg.deploy.int8 import calibration_images, quantize_onnx
    from csrseg.deploy.onnx import checkpoint_metadata, export_onnx

    calib = calibration_images(data, calib_images)
    trained = load_trained_model(weights)
    model, cfg = trained.model, trained.cfg
    meta = checkpoint_metadata(cfg, trained.class_names, trained.cat_ids)
    fp32 = export_onnx(model, cfg.input, tmp_dir / "checkpoint.onnx", meta)
    int8 = quantize_onnx(fp32, tmp_dir / "checkpoint_int8.onnx", calib).path
    runs = [(fp32, "ONNX fp32", "fp32", False), (int8, "ONNX INT8", "fp32", True)]
    if openvino_installed():
        from csrseg.deploy.openvino import export_openvino, quantize_openvino

        ov = export_openvino(fp32, tmp_dir / "checkpoint.xml")
        quantize_openvino(fp32, tmp_dir / "checkpoint_int8.xml", calib)
        runs += [(ov, f"OpenVINO {p}", p, False) for p in openvino_precisions()]
        runs.append((tmp_dir / "checkpoint_int8.xml", "OpenVINO INT8", "fp32", True))
    models = []
    for path, kind, precision, quantized in runs:
        report = evaluate(path, data=data, precision=precision, out=tmp_dir / f"{path.stem}_{precision}_results.json",
                          plots=False)
        models.append(CheckpointModel(f"{Path(weights).name} ({cfg.name}), {kind}", path, count_params(model),
                                      report["mask"]["AP"], precision, quantized))
    return models


def given_openvino_models(xml: str | Path, data: str | Path | None, tmp_dir: Path) -> list[CheckpointModel]:
    """The IR at ``xml`` in each precision OpenVINO runs it in here, with its mask AP on ``data``'s val
    split when ``data`` is given (else nan: speed only)."""
    from csrseg.api import evaluate
    from csrseg.inference.openvino_predictor import OpenVinoPredictor

    xml = Path(xml)
    quantized = "quantization" in OpenVinoPredictor(xml).metadata
    models = []
    for precision in openvino_precisions():
        ap = (evaluate(xml, data=data, precision=precision, out=tmp_dir / f"{xml.stem}_{precision}_results.json",
                        plots=False)["mask"]["AP"] if data else None)
        kind = "INT8" if quantized else precision
        models.append(CheckpointModel(f"{xml.name}, OpenVINO {kind}{f' ({precision} rest)' if quantized else ''}",
                                      xml, float("nan"), ap, precision, quantized))
    return models


def benchmark_necks(names: tuple[str, ...], size: tuple[int, int], device: torch.device, runs: int, warmup: int) -> dict[str, float]:
    """Median seconds of the neck alone on the backbone features of one ``size`` image, the necks
    taking turns (after ``warmup`` untimed rounds)."""
    steps = {}
    for name in names:
        model: CSRSeg = build_model(without_pretrained(load_config(name))).to(device).eval()
        with torch.no_grad():
            feats = model.backbone(padded_input(size, device))
        steps[name] = torch.no_grad()(lambda model=model, feats=feats: model.neck(feats))
    times = interleaved_times(steps, runs, device, warmup_rounds=warmup)
    return {name: statistics.median(t) for name, t in times.items()}


def synthetic_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A reproducible test image ``(3, H, W)``, 0-255 float."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, height, width, generator=g) * 255


def format_rows(rows: list[Row], reference: str, peaks: dict[str, float], device_name: str) -> str:
    """Markdown table; ratios are to the ``reference`` entry of the same size; each row's share is of
    the measured matmul peak of its own precision (``peaks``: precision -> GFLOP/s). A mask AP column
    is added when a row has an AP or a note."""
    with_ap = any(row.ap is not None or row.note for row in rows)
    listed = ", ".join(f"{name} {value:.0f} {'GOP/s' if name == 'int8' else 'GFLOP/s'}" for name, value in peaks.items())
    lines = [
        f"Device: {device_name}; matmul peaks: {listed} (measured in the same process).",
        "",
        "| model | input (W×H) | images/s | × Mask R-CNN | params (M) | GFLOPs | peak mem (MB) | share of its precision's matmul peak |"
        + (" mask AP |" if with_ap else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if with_ap else ""),
    ]
    for row in rows:
        ref = next((r for r in rows if r.name == reference and r.size == row.size), None)
        ratio = f"{row.fps / ref.fps:.2f}" if ref else "-"
        peak = peaks.get(row.precision)
        share = f"{row.gflops * row.fps / peak:.0%} of {row.precision}" if row.gflops == row.gflops and peak else "-"
        gflops = f"{row.gflops:.0f}" if row.gflops == row.gflops else "-"
        params = f"{row.params:.2f}" if row.params == row.params else "-"  # nan: an exported model's, not counted
        line = (f"| {row.name} | {row.size[1]}×{row.size[0]} | {row.fps:.3f} | {ratio} | {params} | "
                f"{gflops} | {row.peak_mb:.0f} | {share} |")
        if with_ap:
            line += f" {row.ap:.1f} |" if row.ap is not None else f" {row.note or '-'} |"
        lines.append(line)
    return "\n".join(lines)


@dataclass(frozen=True)
class Trained:
    """The user's own models to time beside the random-weight rows: a checkpoint (``weights``, whose ONNX
    and OpenVINO exports, INT8 calibrated on ``calib_images`` train images, get rows) and/or an OpenVINO
    IR (``openvino``), each with its mask AP on ``data``'s val split where ``data`` is given."""

    weights: str | Path | None = None
    data: str | Path | None = None
    calib_images: int = 64
    openvino: str | Path | None = None


def run_benchmark(sizes: list[tuple[int, int]], *, runs: int = 5, warmup: int = 2, device: str = "cpu",
                  fast_paths: bool = True, trained: Trained = Trained()) -> str:
    """The whole comparison as markdown: per size, our ``paper`` and ``knet`` configs (the paper's speed
    claim is against K-Net: Table II row 1), Mask R-CNN,
    and our fast paths (bf16/fp16 autocast, channels-last, ONNX Runtime fp32 and INT8 on CPU, and
    OpenVINO fp32, bf16 and INT8 where the ``[openvino]`` extra is installed); then the necks alone.
    ``trained``: rows of one's own models (:func:`checkpoint_models`, :func:`given_openvino_models`);
    without a checkpoint the INT8 rows are speed only."""
    import tempfile

    weights, data, calib_images, openvino = trained.weights, trained.data, trained.calib_images, trained.openvino
    dev = torch.device(device)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_description()
    peaks = matmul_peaks(dev)
    paper, knet = load_config("paper"), load_config("knet")
    half = cuda_half_precision(dev) if dev.type == "cuda" else "bf16"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        trained = checkpoint_models(weights, data, work, calib_images) if weights is not None and dev.type == "cpu" else []
        if openvino is not None:
            trained += given_openvino_models(openvino, data, work)
        for height, width in sizes:
            image = synthetic_image(height, width)
            entries = [maskrcnn_entry(image, dev),
                       ours_entry(knet, image, dev, name="knet (K-Net, Table II row 1)"),
                       ours_entry(paper, image, dev, name="paper (CSR + D2S)")]
            if fast_paths:
                # not where bf16 is emulated (no AVX512-BF16 or AMX): oneDNN's reference kernels take
                # minutes an image at this size, and auto never picks it there
                if dev.type == "cuda" or native_bf16():
                    entries.append(ours_entry(paper, image, dev, precision=half, predict_path=True,
                                              name=f"paper, {half} autocast, as predict runs it"))
                if dev.type == "cuda":  # the paper's claim is against K-Net: compare like with like
                    entries.append(ours_entry(knet, image, dev, precision=half, name=f"knet, {half} autocast"))
                entries.append(ours_entry(paper, image, dev, channels_last=True, name="paper, channels-last"))
                entries.append(ours_entry(paper, image, dev, predict_path=True,
                                          name="paper, as predict runs it (channels-last, BatchNorm folded)"))
                if dev.type == "cpu":  # what predict and eval run with --precision auto at this size
                    entries.append(ours_entry(paper, image, dev, precision="auto", predict_path=True,
                                              name="paper, --precision auto"))
                if dev.type == "cpu" and compiler_here():  # torch.compile, where it can build its code
                    for precision in ("fp32", "bf16") if native_bf16() else ("fp32",):
                        entries.append(ours_entry(paper, image, dev, precision=precision, predict_path=True, compiled=True,
                                                  name=f"paper, {precision}, torch.compile, as predict --compile runs it"))
                if dev.type == "cpu":
                    entries.append(onnx_entry(paper, image, work))
                    entries.append(onnx_entry(paper, image, work, int8=True, note="random weights: speed only"))
                    if openvino_installed():
                        entries += openvino_entries(paper, image, work)
            entries += [Entry(m.name, m.step(image), m.params, float("nan"), torch.device("cpu"), ap=m.ap,
                              note="" if m.ap is not None else "no --data: speed only",
                              precision="int8" if m.int8 else m.precision) for m in trained]
            rows += time_entries(entries, (height, width), runs, warmup)
            del entries  # the next size's models and sessions replace these
    necks = benchmark_necks(("knet", "paper"), sizes[0], dev, runs * 4, warmup)
    text = format_rows(rows, MASK_RCNN, peaks, device_name)
    text += (f"\n\nEach figure is the median of {runs} rounds in which the entries of one input size took turns "
             f"(after {max(1, warmup)} warm-up runs each, over which peak memory is measured).")
    if fast_paths and dev.type == "cpu":
        text += ("\n\n`--precision auto` (predict, eval) times its candidates on the first batch, at that batch's "
                 "size, network and post-processing included, and takes the faster: its row says what it took"
                 + ("." if native_bf16() else " (this CPU has no native bf16: fp32 untimed)."))
    h, w = sizes[0]
    text += (f"\n\nNeck alone at {w}×{h} (median of {runs * 4}): K-Net's FPN + SemanticFPN {necks['knet'] * 1e3:.1f} ms, "
             f"CSR + D2S {necks['paper'] * 1e3:.1f} ms ({necks['knet'] / necks['paper']:.2f}× faster).")
    if weights is not None:
        text += (f"\nRows of {Path(weights).name}: its own input size and thresholds (a trained model's load), INT8 "
                 f"calibrated on {calib_images} train images, mask AP on the val split of {data}; every other row "
                 "runs on random weights (speed does not depend on them; nothing is downloaded).")
    if openvino is not None:
        text += (f"\nRows of {Path(openvino).name}: the IR as given, at its own input size and thresholds"
                 + (f", mask AP on the val split of {data}." if data else " (no --data: speed only)."))
    if weights is None and openvino is None:
        text += ("\nAll models run on random weights (speed does not depend on them; nothing is downloaded); "
                 "the INT8 row is calibrated on random images. `--weights CKPT --data DATA` adds a checkpoint's "
                 "ONNX fp32 and INT8 rows with their mask AP.")
    return text



def parse_sizes(sizes: list[str]) -> list[tuple[int, int]]:
    """``["1333x800", ...]`` (WIDTHxHEIGHT) -> ``[(800, 1333), ...]`` (H, W); one line naming a bad one."""
    parsed = []
    for text in sizes:
        try:
            width, height = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise CsrsegError(f"--sizes {text!r}: expected WIDTHxHEIGHT, e.g. 1333x800") from None
        if min(width, height) < 32:
            raise CsrsegError(f"--sizes {text!r}: each side at least 32 pixels (the network's coarsest stride)")
        parsed.append((height, width))
    return parsed


def benchmark(sizes: list[str] | list[tuple[int, int]] = ("1333x800", "640x640"), *, runs: int = 5, warmup: int = 2,
              device: str = "cpu", fast_paths: bool = True, weights: str | Path | None = None,
              data: str | Path | None = None, calib_images: int = 64, out: str | Path | None = None,
              exist_ok: bool = False, openvino: str | Path | None = None) -> str:
    """``csrseg benchmark``: :func:`run_benchmark` on ``sizes`` (``"WxH"`` strings or ``(H, W)``), its
    inputs checked before the minutes of timing; the markdown table, also written to ``out`` if given."""
    parsed = parse_sizes(list(sizes)) if sizes and isinstance(list(sizes)[0], str) else list(sizes)
    if weights and not data:
        raise CsrsegError("--weights and --data go together: the checkpoint's AP is measured on the data's val split")
    if data and not (weights or openvino):
        raise CsrsegError("--data is the val split of --weights or --openvino: give one of them")
    if openvino:
        from csrseg.inference.openvino_predictor import OpenVinoPredictor

        OpenVinoPredictor(openvino)  # a missing or unreadable IR is named before the minutes of timing
    if out:
        check_output_file(out, exist_ok, what="benchmark table")
    report = run_benchmark(parsed, runs=runs, warmup=warmup, device=device, fast_paths=fast_paths,
                           trained=Trained(weights=weights, data=data, calib_images=calib_images, openvino=openvino))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(report + "\n")
    return report

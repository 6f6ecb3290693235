"""Training: the paper's recipe, single process or DDP under ``torchrun``, resumable.

Run folder contents: ``config.yaml``, ``log.jsonl`` (one row per logged iteration
and per evaluation), ``last.pt`` (every epoch, and every ``checkpoint_interval``
iterations), ``best.pt`` (best val mask AP), ``results.png`` (loss/AP plot) and
``val_results.json`` (COCO results of the last evaluation).

Determinism: the order of an epoch comes from ``(seed, epoch)`` and each sample's
augmentation from ``(seed, epoch, index)``; a resume restores model, optimiser,
scaler, position in the epoch and RNG state, so an interrupted run ends with the
weights of an uninterrupted one (on CPU, to float tolerance).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from csrseg.config import Config, ConfigError, save_config, to_dict, without_pretrained
from csrseg.runtime.cpu import cuda_half_dtype, keep_freed_memory, native_bf16
from csrseg.data import CocoInstances, Transform, collate
from csrseg.data.coco import DatasetError, warn_if_unscorable
from csrseg.data.sources import DatasetSources, resolve_dataset
from csrseg.engine import distributed as du
from csrseg.engine import preempt
from csrseg.engine.checkpoint import CheckpointError, atomic_save, load_checkpoint, load_model_state
from csrseg.engine.plots import plot_training, read_log
from csrseg.engine.rundir import REPLACED_DIR, TRAIN_OUTPUTS, check_outputs, set_aside_outputs
from csrseg.engine.schedule import lr_factor
from csrseg.engine.tensorboard import TensorBoardLog
from csrseg.errors import CsrsegError
from csrseg.evaluation.coco import coco_mask_ap, run_inference, write_results
from csrseg.models import build_model
from csrseg.models.backbones.resnet import describe_weights

logger = logging.getLogger("csrseg")

#: the time estimate is taken over iterations ETA_AFTER+1 .. 2*ETA_AFTER (the first ones are slower)
ETA_AFTER = 10


class NonFiniteLossError(CsrsegError, RuntimeError):
    """Too many consecutive steps with a NaN/inf loss."""


@dataclass
class TrainResult:
    run_dir: Path
    last: Path
    best: Path | None
    best_ap: float
    iterations: int
    metrics: dict[str, float] = field(default_factory=dict)


def epoch_batches(num_samples: int, epoch: int, cfg: Config, env: du.DistEnv) -> list[list[int]]:
    """This process's batches of sample indices for ``epoch`` (DistributedSampler order)."""
    if cfg.train.batch_size % env.world_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not divisible by {env.world_size} processes")
    per_rank = cfg.train.batch_size // env.world_size
    sampler = DistributedSampler(range(num_samples), env.world_size, env.rank, shuffle=True, seed=cfg.train.seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i : i + per_rank] for i in range(0, len(order), per_rank)]


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW with the backbone at ``lr * backbone_lr_mult``; frozen parameters left out."""
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    groups = [
        dict(params=backbone, lr=cfg.train.lr * cfg.train.backbone_lr_mult, base_lr=cfg.train.lr * cfg.train.backbone_lr_mult),
        dict(params=rest, lr=cfg.train.lr, base_lr=cfg.train.lr),
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def evaluations_left(epoch: int, last_epoch: int, interval: int) -> int:
    """Evaluations after the one at the end of ``epoch`` (1-based count of finished epochs): every
    ``interval`` epochs and at the end of ``last_epoch``, the run's final one."""
    return sum(1 for e in range(epoch + 1, last_epoch + 1) if e % interval == 0 or e == last_epoch)


def make_datasets(cfg: Config, data: str | Path | DatasetSources, train_split: str, val_split: str | None):
    """Train and val splits of ``data`` (any layout :func:`resolve_dataset` knows); val shares train's classes."""
    sources = data if isinstance(data, DatasetSources) else resolve_dataset(data, train_split, val_split or "val")
    logger.info(sources.describe(("train", "val") if val_split else ("train",)))
    files = sources.get("train")
    train_ds = CocoInstances(files.annotations, files.images, Transform(cfg.input, train=True), seed=cfg.train.seed)
    train_ds.index.class_names = sources.class_names(train_ds.index)
    if not train_ds.index.num_targets():  # a run would go through its epochs and learn nothing
        raise DatasetError(f"{files.annotations}: none of its {len(train_ds)} images has a usable annotation of "
                           f"{len(train_ds.cat_ids)} output classes: nothing to train on (the wrong split or file?)")
    unused = [c for c in train_ds.index.unused_cat_ids if c not in train_ds.cat_ids]
    if unused:
        names = ", ".join(f"{c} {train_ds.index.categories[c][:40]!r}" for c in unused[:3])
        logger.info("%s: %d categor%s without annotations given no output class: %s", files.annotations, len(unused),
                    "y" if len(unused) == 1 else "ies", names)
    val_ds = None
    if val_split:
        files = sources.get("val")
        val_ds = CocoInstances(files.annotations, files.images, Transform(cfg.input, train=False),
                               same_categories_as=train_ds.index)
        val_ds.index.class_names = train_ds.class_names
        warn_if_unscorable(val_ds.index)
    return train_ds, val_ds


def evaluate_model(model: nn.Module, dataset: CocoInstances, cfg: Config, env: du.DistEnv,
                   progress: bool = False) -> tuple[dict[str, float], list[dict]]:
    """COCO mask AP of ``model`` on ``dataset``; every process infers a shard, rank 0 scores."""
    sampler = DistributedSampler(dataset, env.world_size, env.rank, shuffle=False)
    per_rank = max(1, cfg.train.batch_size // env.world_size)
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=cfg.train.workers,
                        collate_fn=partial(collate, size_divisor=cfg.input.size_divisor),
                        worker_init_fn=preempt.ignore_in_worker)
    results, seen = run_inference(model, loader, dataset.cat_ids, env.device, cfg.train.amp, progress and env.is_main)
    gathered = du.all_gather_objects((results, seen))
    metrics: dict[str, float] = {}
    all_results: list[dict] = []
    if env.is_main:
        # DistributedSampler repeats a few images to even out the shards: keep each image once.
        done: set[int] = set()
        for res, ids in gathered:
            fresh = set(ids) - done
            all_results.extend(r for r in res if r["image_id"] in fresh)
            done |= fresh
        metrics, _ = coco_mask_ap(dataset.index.path, all_results, sorted(done))
    metrics = du.broadcast_object(metrics)
    return metrics, all_results


class JsonlLog:
    """Append-only run log, written by rank 0 only."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self.tensorboard = TensorBoardLog(path.parent / "tensorboard", enabled)

    def truncate_after(self, iteration: int, epoch: int) -> None:
        """Drop rows a killed run wrote after the checkpoint being resumed."""
        if not self.enabled:
            return
        keep = [r for r in read_log(self.path)
                if (r.get("type") == "train" and r.get("iter", 0) <= iteration)
                or (r.get("type") == "eval" and r.get("epoch", 0) <= epoch)]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            self.tensorboard.write(row)

    def plot(self, out_path: Path) -> None:
        """Redraw the loss/AP plot from the log; a plot must never cost the run."""
        if not self.enabled:
            return
        try:
            plot_training(self.path, out_path)
        except Exception as exc:
            logger.warning("could not draw the training plot: %s", exc)


@preempt.preemptible
def train(
    cfg: Config,
    data_root: str | Path | DatasetSources,
    run_dir: str | Path,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    train_split: str = "train",
    val_split: str | None = "val",
    init_weights: str | Path | None = None,
    strict: bool = True,
    checkpoint_interval: int = 0,
    log_interval: int = 10,
    exist_ok: bool = False,
) -> TrainResult:
    """Train ``cfg`` on the COCO-format dataset at ``data_root`` (a folder or dataset YAML in any layout
    :func:`csrseg.data.sources.resolve_dataset` knows, or its result); see the module docstring.

    ``init_weights``: a checkpoint to start from (fine-tuning); with ``strict=False``
    tensors that do not fit (e.g. another class count) keep their initialisation.
    ``checkpoint_interval``: also write ``last.pt`` every this many iterations.
    ``exist_ok``: replace the results of another run in ``run_dir`` (refused otherwise, unless ``resume``).
    SIGTERM/SIGINT stop after the current step with ``last.pt`` written (:mod:`csrseg.engine.preempt`).
    """
    env = du.init_distributed(device)
    run_dir = Path(run_dir)
    data_arg = (data_root.location or "DATA") if isinstance(data_root, DatasetSources) else data_root
    resume_cmd = f"csrseg train --resume {run_dir} --data {data_arg}"
    replaced = [] if resume else check_outputs(
        run_dir, TRAIN_OUTPUTS, exist_ok, f"continue it with `{resume_cmd}`, replace it with --exist-ok, or choose another --out")
    torch.manual_seed(cfg.train.seed)

    train_ds, val_ds = make_datasets(cfg, data_root, train_split, val_split)
    if cfg.model.num_classes != len(train_ds.cat_ids):
        logger.info("num_classes set to %d from %s", len(train_ds.cat_ids), train_ds.index.path)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, num_classes=len(train_ds.cat_ids)))
    for what, count in train_ds.index.warnings.items():
        logger.warning("%s: %d %s", train_ds.index.path, count, what)

    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    # a resumed or fine-tuned run's weights come from a checkpoint: no pretrained weights to fetch
    from_checkpoint = last_path if resume and last_path.is_file() else init_weights
    logger.info(f"backbone: weights from {from_checkpoint}" if from_checkpoint else describe_weights(cfg.model.backbone))
    model = build_model(without_pretrained(cfg) if from_checkpoint else cfg).to(env.device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if env.device.type == "cpu":
        keep_freed_memory()  # fewer page faults per step (benchmarks/RESULTS.md, "Demo on an ordinary CPU")
    if init_weights and not (resume and last_path.is_file()):
        ckpt = load_checkpoint(init_weights)
        skipped = load_model_state(model, ckpt["model"], strict=strict, source=str(init_weights))
        if skipped:
            logger.warning("%s: %d tensors did not fit and were re-initialised (e.g. %s)", init_weights, len(skipped), skipped[0])
    if cfg.model.backbone.norm == "bn" and env.enabled and env.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, cfg)
    use_amp, amp_dtype = amp_settings(cfg.train.amp, env.device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    epoch, step_in_epoch, iteration, best_ap = 0, 0, 0, -1.0
    resumed_total = 0  # the run length a resumed run was started with (0: not recorded, or a new run)
    metrics: dict[str, float] = {}
    log = JsonlLog(run_dir / "log.jsonl", env.is_main)
    if resume:
        if not last_path.is_file():
            raise CheckpointError(f"{last_path}: nothing to resume (no last checkpoint in {run_dir})")
        ckpt = load_checkpoint(last_path)
        load_model_state(model, ckpt["model"], strict=True, source=str(last_path))
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"]:  # empty when the run started where loss scaling was off (CPU, bf16)
            scaler.load_state_dict(ckpt["scaler"])
        epoch, step_in_epoch, iteration = ckpt["epoch"], ckpt["step"], ckpt["iteration"]
        best_ap, metrics = ckpt["best_ap"], ckpt.get("metrics", {})
        resumed_total = ckpt.get("total_iters", 0)
        torch.set_rng_state(ckpt["rng"]["torch"])
        log.truncate_after(iteration, epoch)
        logger.info("resumed %s at epoch %d, iteration %d", last_path, epoch + 1, iteration)
    elif env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        set_aside = set_aside_outputs(replaced, run_dir / REPLACED_DIR)
        if set_aside:
            logger.info("the run replaced in %s is kept in %s until this one finishes", run_dir, set_aside)
        log.path.write_text("")
    if env.is_main:
        save_config(cfg, run_dir / "config.yaml")
    saved_iteration: int | None = iteration if resume else None  # of the last.pt on disk, for error messages

    raw_model = model
    if env.enabled:
        model = DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None)

    def checkpoint(done: bool) -> None:
        nonlocal saved_iteration
        # Under DDP every process hashes its weights: the replicas must stay bit-identical.
        fingerprints = du.all_gather_objects(weights_fingerprint(raw_model)) if env.enabled else []
        if len(set(fingerprints)) > 1:
            logger.warning("model replicas differ between processes at iteration %d", iteration)
        if not env.is_main:
            return
        state = dict(
            model=raw_model.state_dict(), optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
            epoch=epoch, step=step_in_epoch, iteration=iteration, best_ap=best_ap, finished=done, total_iters=total_iters,
            config=to_dict(cfg), classes=train_ds.class_names, cat_ids=train_ds.cat_ids,
            rng=dict(torch=torch.get_rng_state()), metrics=metrics, rank_fingerprints=fingerprints,
        )
        atomic_save(state, last_path, if_failed=_still_good(last_path, saved_iteration, resume_cmd))
        saved_iteration = iteration

    iters_per_epoch = len(epoch_batches(len(train_ds), 0, cfg, env))
    total_iters = iters_per_epoch * cfg.train.epochs
    if cfg.train.max_iters:
        total_iters = min(total_iters, cfg.train.max_iters)
    # A resumed run goes on as long as the (possibly extended) schedule has iterations left.
    finished = iteration >= total_iters or epoch >= cfg.train.epochs
    if resumed_total and resumed_total != total_iters and cfg.train.schedule != "step" and not finished:
        # a smooth decay is stretched over the new length: say how far the lr moves back up
        logger.warning("warning: the %s schedule now spans %d iterations instead of %d: at iteration %d the lr "
                       "goes from %.3g to %.3g of train.lr", cfg.train.schedule, total_iters, resumed_total, iteration,
                       lr_factor(iteration, epoch, cfg.train, resumed_total), lr_factor(iteration, epoch, cfg.train, total_iters))
    bad_steps = 0
    start_iteration, eta_tic, evaluated_once = iteration, 0.0, False
    collate_fn = partial(collate, size_divisor=cfg.input.size_divisor)

    while not finished and epoch < cfg.train.epochs:
        train_ds.set_epoch(epoch)
        batches = epoch_batches(len(train_ds), epoch, cfg, env)[step_in_epoch:]
        loader = DataLoader(train_ds, batch_sampler=batches, num_workers=cfg.train.workers, collate_fn=collate_fn,
                            pin_memory=env.device.type == "cuda", worker_init_fn=preempt.ignore_in_worker)
        bar = _progress(len(batches), epoch, cfg, progress and env.is_main)
        model.train()
        tic = time.perf_counter()
        for images, targets in loader:
            factor = lr_factor(iteration, epoch, cfg.train, total_iters)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            images = images.to(env.device, non_blocking=True)
            if cfg.train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = [t["labels"].to(env.device, non_blocking=True) for t in targets]  # pinned on CUDA
            masks = [t["masks"].to(env.device, non_blocking=True) for t in targets]
            with torch.autocast(env.device.type, dtype=amp_dtype, enabled=use_amp):
                outputs = model(images)
            losses = raw_model.loss(outputs, labels, masks)
            if not _all_finite(losses["loss"]):
                bad_steps += 1
                ids = [t["image_id"] for t in targets]
                logger.warning("non-finite loss at iteration %d (image ids %s): step skipped", iteration + 1, ids)
                optimizer.zero_grad(set_to_none=True)
                if bad_steps >= cfg.train.max_bad_steps:
                    raise NonFiniteLossError(
                        f"training stopped: {bad_steps} consecutive non-finite losses (last image ids {ids}); "
                        f"the last good checkpoint is {last_path}"
                    )
            else:
                bad_steps = 0
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["loss"]).backward()
                scaler.unscale_(optimizer)
                if cfg.train.clip_grad > 0:
                    nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.train.clip_grad)
                scaler.step(optimizer)
                scaler.update()
            iteration += 1
            step_in_epoch += 1
            # one copy off the device for all the logged values (on a GPU each copy waits for the step)
            values = dict(zip(losses, torch.stack([v.detach().float() for v in losses.values()]).tolist()))
            if bar is not None:
                bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in values.items()} | {"lr": f"{optimizer.param_groups[-1]['lr']:.2e}"})
                bar.update(1)
            if iteration - start_iteration == ETA_AFTER + 1:
                eta_tic = time.perf_counter()
            elif iteration - start_iteration == 2 * ETA_AFTER + 1 and env.is_main:
                per_iter = (time.perf_counter() - eta_tic) / ETA_AFTER
                logger.info("%.2f s/iteration: training will take about %s more (%d iterations left, evaluations not counted)",
                            per_iter, _duration(per_iter * (total_iters - iteration)), total_iters - iteration)
            if iteration % log_interval == 0 or iteration == total_iters:
                log.write(dict(type="train", iter=iteration, epoch=epoch + 1, lr=optimizer.param_groups[-1]["lr"],
                               time=round(time.perf_counter() - tic, 3), **values))
            if checkpoint_interval and iteration % checkpoint_interval == 0:
                checkpoint(False)
            signum = preempt.stop_requested(env.device) if iteration < total_iters else 0
            if signum:
                checkpoint(False)
                raise preempt.TrainingInterrupted(
                    f"{preempt.signal_name(signum)}: training stopped after iteration {iteration}, {last_path} written; "
                    f"continue with `{resume_cmd}`", signum)
            if iteration >= total_iters:
                break
        if bar is not None:
            bar.close()
        reached_end = iteration >= total_iters
        if step_in_epoch >= iters_per_epoch or reached_end:
            epoch, step_in_epoch = (epoch + 1, 0) if step_in_epoch >= iters_per_epoch else (epoch, step_in_epoch)
            finished = reached_end or epoch >= cfg.train.epochs
            if val_ds is not None and (finished or epoch % cfg.train.eval_interval == 0):
                eval_tic = time.perf_counter()
                metrics, results = evaluate_model(raw_model, val_ds, cfg, env)
                still_to_come = evaluations_left(epoch, -(-total_iters // iters_per_epoch), cfg.train.eval_interval)
                if env.is_main and not finished and not evaluated_once and still_to_come:
                    # the training estimate above leaves evaluations out: now their cost is known
                    seconds = time.perf_counter() - eval_tic
                    logger.info("evaluation took %s: the %d still to come add about %s", _duration(seconds),
                                still_to_come, _duration(seconds * still_to_come))
                evaluated_once = True
                if env.is_main:
                    log.write(dict(type="eval", epoch=epoch, iter=iteration, **metrics))
                    log.plot(run_dir / "results.png")
                    write_results(results, run_dir / "val_results.json")
                    # a run stopped by max_iters inside an epoch is named by its iteration, not "epoch 0"
                    where = f"epoch {epoch}" if step_in_epoch == 0 else f"iteration {iteration} (epoch {epoch + 1}, partial)"
                    logger.info("%s: mask AP %.1f (AP50 %.1f, AP75 %.1f)", where, metrics["AP"], metrics["AP50"], metrics["AP75"])
                    if metrics["AP"] > best_ap:
                        best_ap = metrics["AP"]
                        atomic_save(dict(model=raw_model.state_dict(), config=to_dict(cfg), classes=train_ds.class_names,
                                         cat_ids=train_ds.cat_ids, metrics=metrics, epoch=epoch, iteration=iteration), best_path,
                                    if_failed=_still_good(last_path, saved_iteration, resume_cmd))
            checkpoint(finished)

    log.plot(run_dir / "results.png")
    log.tensorboard.close()
    du.barrier()
    if env.is_main and (run_dir / REPLACED_DIR).is_dir():  # this run finished: the one it replaced goes now
        shutil.rmtree(run_dir / REPLACED_DIR)
    return TrainResult(run_dir, last_path, best_path if best_path.is_file() else None, best_ap, iteration, metrics)


def amp_settings(amp: bool, device: torch.device) -> tuple[bool, torch.dtype]:
    """Mixed precision to use: on CUDA bf16 where the GPU computes it, else fp16 with loss scaling
    (:func:`csrseg.runtime.cpu.cuda_half_dtype`); bf16 on CPUs that compute it natively (AVX512-BF16 / AMX,
    ~1.7x faster training there); else none."""
    if not amp:
        return False, torch.float32
    if device.type == "cuda":
        return True, cuda_half_dtype(device)
    return native_bf16(), torch.bfloat16


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of all parameters and buffers, in state-dict order."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _still_good(last_path: Path, iteration: int | None, resume_cmd: str) -> str:
    """What a failed checkpoint write leaves the user: the checkpoint still intact and how to go on."""
    if iteration is None:
        return "no checkpoint of this run was written yet; free some space and start again"
    return f"{last_path} (iteration {iteration}) is intact; free some space and continue with `{resume_cmd}`"


def _all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every process (all skip together, or none does)."""
    flag = torch.tensor([1.0 if math.isfinite(float(loss.detach())) else 0.0], device=loss.device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def _progress(total: int, epoch: int, cfg: Config, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", dynamic_ncols=True, leave=True)


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"

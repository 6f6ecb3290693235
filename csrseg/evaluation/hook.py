"""Evaluation while training: COCO mask AP on the val split every ``train.eval_interval`` epochs and at
the end of the run, logged and plotted, ``val_results.json`` written and ``best.pt`` kept."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from torch import nn

from csrseg.config import Config
from csrseg.data import CocoInstances
from csrseg.engine import distributed as du
from csrseg.engine.checkpoint import atomic_save
from csrseg.engine.hooks import Checkpointer, RunLog, duration
from csrseg.engine.trainer import Hook, Trainer, out_of_patience
from csrseg.evaluation.coco import coco_mask_ap, infer_dataset, write_results
from csrseg.inference.predictor import Predictor
from csrseg.inference.tiling import TiledPredictor, Tiling, model_tile
from csrseg.runtime.precision import Precision

logger = logging.getLogger("csrseg")


def evaluate_model(model: nn.Module, dataset: CocoInstances, cfg: Config, env: du.DistEnv, precision: Precision,
                   progress: bool = False) -> tuple[dict[str, float], list[dict]]:
    """COCO mask AP of ``model`` (in memory, used as it is) on ``dataset``; every process infers a shard,
    rank 0 scores. A model trained on crops is scored as it predicts, in tiles of its crop
    (:func:`csrseg.inference.tiling.model_tile`)."""
    per_rank = max(1, cfg.train.batch_size // env.world_size)
    predictor = Predictor.for_model(model, cfg, dataset.class_names, dataset.cat_ids, env.device, precision)
    tile = model_tile(cfg.input)
    if tile is not None:
        predictor = TiledPredictor(predictor, Tiling(tile, whole=False, batch=per_rank))
    results, seen = infer_dataset(predictor, dataset, batch=per_rank, workers=cfg.train.workers,
                                  progress=progress and env.is_main, rank=env.rank, world_size=env.world_size)
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


def evaluations_left(epoch: int, last_epoch: int, interval: int) -> int:
    """Evaluations after the one at the end of ``epoch`` (1-based count of finished epochs): every
    ``interval`` epochs and at the end of ``last_epoch``, the run's final one."""
    return sum(1 for e in range(epoch + 1, last_epoch + 1) if e % interval == 0 or e == last_epoch)


class Evaluation(Hook):
    """After an epoch: evaluate when due, log the metrics, redraw the plot, write ``val_results.json``
    and, on a new best AP, ``best.pt``. ``identity``: config, classes and category ids for ``best.pt``.
    On a CPU the evaluation runs in fp32 whatever the training precision: its AP does not then
    depend on which precision the machine trained in."""

    def __init__(self, dataset: CocoInstances, log: RunLog, checkpointer: Checkpointer, identity: dict[str, Any]) -> None:
        self.dataset, self.log, self.checkpointer, self.identity = dataset, log, checkpointer, identity
        self.evaluated_once = False

    def after_epoch(self, trainer: Trainer) -> None:
        state, cfg, env = trainer.state, trainer.cfg, trainer.env
        if not (state.finished or state.epoch % cfg.train.eval_interval == 0):
            return
        tic = time.perf_counter()
        precision = trainer.precision if env.device.type == "cuda" else Precision("fp32", "evaluation")
        metrics, results = evaluate_model(trainer.eval_model, self.dataset, cfg, env, precision)
        state.metrics = metrics
        last_epoch = -(-state.total_iters // trainer.iters_per_epoch)
        still_to_come = evaluations_left(state.epoch, last_epoch, cfg.train.eval_interval)
        if env.is_main and not state.finished and not self.evaluated_once and still_to_come:
            # the training estimate leaves evaluations out: now their cost is known
            seconds = time.perf_counter() - tic
            logger.info("evaluation took %s: the %d still to come add about %s", duration(seconds), still_to_come,
                        duration(seconds * still_to_come))
        self.evaluated_once = True
        # every process keeps the same record (the metrics are broadcast): all stop early together
        improved = metrics["AP"] > state.best_ap
        if improved:
            state.best_ap, state.evals_since_best = metrics["AP"], 0
        else:
            state.evals_since_best += 1
        if out_of_patience(state, cfg.train.patience) and not state.finished:
            state.finished = True  # the loop ends after this epoch; last.pt records the stop
            logger.info("stopping early: %d evaluations without a better mask AP than %.1f (train.patience=%d)",
                        state.evals_since_best, state.best_ap, cfg.train.patience)
        if not env.is_main:
            return
        self.log.write(dict(type="eval", epoch=state.epoch, iter=state.iteration, **metrics))
        self.log.plot()
        write_results(results, trainer.run_dir / "val_results.json")
        # a run stopped by max_iters inside an epoch is named by its iteration, not "epoch 0"
        where = (f"epoch {state.epoch}" if state.step_in_epoch == 0
                 else f"iteration {state.iteration} (epoch {state.epoch + 1}, partial)")
        logger.info("%s: mask AP %.1f (AP50 %.1f, AP75 %.1f)", where, metrics["AP"], metrics["AP50"], metrics["AP75"])
        if improved:
            best = dict(model=trainer.eval_model.state_dict(), **self.identity, metrics=metrics, epoch=state.epoch,
                        iteration=state.iteration)
            atomic_save(best, best_path(trainer.run_dir), if_failed=self.checkpointer.if_failed(trainer))


def best_path(run_dir: Path) -> Path:
    return Path(run_dir) / "best.pt"

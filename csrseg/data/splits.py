"""The train and val splits of a training run, read and checked before the run starts."""

from __future__ import annotations

import logging

from csrseg.data.coco import CocoInstances, DatasetError, warn_if_unscorable
from csrseg.data.sizes import object_sizes, size_advice
from csrseg.data.sources import DatasetSources
from csrseg.data.transforms import InputConfig, Transform

logger = logging.getLogger("csrseg")


def training_splits(sources: DatasetSources, input_cfg: InputConfig, seed: int, train_split: str = "train",
                    val_split: str | None = "val") -> tuple[CocoInstances, CocoInstances | None]:
    """Train and val splits of ``sources``; val shares train's classes. A train split without one
    usable annotation is refused (a run would go through its epochs and learn nothing)."""
    logger.info(sources.describe(("train", "val") if val_split else ("train",)))
    files = sources.get(train_split)
    train_ds = CocoInstances(files.annotations, files.images, Transform(input_cfg, train=True), seed=seed)
    train_ds.index.class_names = sources.class_names(train_ds.index)
    if not train_ds.index.num_targets():
        raise DatasetError(f"{files.annotations}: none of its {len(train_ds)} images has a usable annotation of "
                           f"{len(train_ds.cat_ids)} output classes: nothing to train on (the wrong split or file?)")
    index = train_ds.index
    for line in size_advice(object_sizes(index), input_cfg, [(im["height"], im["width"]) for im in index.images]):
        logger.info(line)  # the objects' size where the model sees them, and what keeps small ones visible
    unused = [c for c in train_ds.index.unused_cat_ids if c not in train_ds.cat_ids]
    if unused:
        names = ", ".join(f"{c} {train_ds.index.categories[c][:40]!r}" for c in unused[:3])
        logger.info("%s: %d categor%s without annotations given no output class: %s", files.annotations, len(unused),
                    "y" if len(unused) == 1 else "ies", names)
    val_ds = None
    if val_split:
        files = sources.get(val_split)
        val_ds = CocoInstances(files.annotations, files.images, Transform(input_cfg, train=False),
                               same_categories_as=train_ds.index)
        val_ds.index.class_names = train_ds.class_names
        warn_if_unscorable(val_ds.index)
    return train_ds, val_ds

"""Data: COCO-format reading, transforms, batching, the synthetic dataset."""

from csrseg.data.coco import CocoInstances, DatasetError, load_coco_json, resolve_split
from csrseg.data.transforms import Transform, collate

__all__ = ["CocoInstances", "DatasetError", "Transform", "collate", "load_coco_json", "resolve_split"]

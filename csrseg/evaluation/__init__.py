"""Evaluation: COCO mask and box AP with the official evaluator, AP per class."""

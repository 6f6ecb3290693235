"""Inference: a trained model on images, folders and videos; overlays and prediction records."""

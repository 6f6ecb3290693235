"""Instance heads on the fused feature, one folder each (K-Net's, the paper's; SOLOv2's, a peer).

Every head is an ``nn.Module`` with the same small interface, so that training, evaluation,
the ONNX export and the benchmark never ask which head runs:

- ``forward(fused)``: the neck's output -> the head's raw outputs (a NamedTuple);
- ``loss(outputs, gt_labels, gt_masks)`` -> dict of scalar losses, ``"loss"`` the total;
- ``postprocess(outputs, input_sizes, orig_sizes, static=False)`` -> one dict per image with
  ``labels (n,)``, ``scores (n,)``, ``masks (n, H0, W0)`` bool at the original size, ``boxes (n, 4)``.
"""

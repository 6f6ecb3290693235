import math

import torch

from csrseg.models.heads.solov2.config import SOLOv2PostprocessConfig as PostprocessConfig
from csrseg.models.heads.solov2.outputs import SOLOv2Output
from csrseg.models.heads.solov2.postprocess import matrix_nms, points_nms, postprocess


def _loop_matrix_nms(masks, labels, scores, sigma):
    """Straightforward O(n^2) reading of SOLOv2's Matrix NMS."""
    n = len(scores)
    m = masks.float().reshape(n, -1)

    def iou(i, j):
        inter = (m[i] * m[j]).sum().item()
        union = m[i].sum().item() + m[j].sum().item() - inter
        return inter / union if union else 0.0

    comp = [max([iou(k, i) for k in range(i) if labels[k] == labels[i]], default=0.0) for i in range(n)]
    out = []
    for j in range(n):
        decay = 1.0
        for i in range(j):
            if labels[i] == labels[j]:
                decay = min(decay, math.exp(-sigma * iou(i, j) ** 2) / math.exp(-sigma * comp[i] ** 2))
        out.append(scores[j].item() * decay)
    return torch.tensor(out)


def test_identical_masks_decay_the_lower_score():
    mask = torch.zeros(2, 10, 10, dtype=torch.bool)
    mask[:, 2:8, 2:8] = True
    scores = torch.tensor([0.9, 0.8])
    out = matrix_nms(mask, torch.tensor([1, 1]), scores, sigma=2.0)
    assert out[0] == 0.9
    assert out[1] < 0.8 * 0.2  # exp(-2) = 0.135 of its score


def test_disjoint_masks_and_other_classes_are_unchanged():
    mask = torch.zeros(3, 10, 10, dtype=torch.bool)
    mask[0, :4, :4] = True
    mask[1, 6:, 6:] = True
    mask[2, :4, :4] = True  # same pixels as 0 but another class
    scores = torch.tensor([0.9, 0.8, 0.7])
    out = matrix_nms(mask, torch.tensor([0, 0, 1]), scores)
    torch.testing.assert_close(out, scores)


def test_matrix_nms_matches_a_loop_implementation():
    g = torch.Generator().manual_seed(0)
    n = 12
    masks = torch.zeros(n, 16, 16, dtype=torch.bool)
    for k in range(n):
        y, x = torch.randint(0, 10, (2,), generator=g)
        h, w = torch.randint(3, 7, (2,), generator=g)
        masks[k, y : y + h, x : x + w] = True
    labels = torch.randint(0, 2, (n,), generator=g)
    scores = torch.sort(torch.rand(n, generator=g), descending=True).values
    torch.testing.assert_close(matrix_nms(masks, labels, scores), _loop_matrix_nms(masks, labels, scores, 2.0), rtol=1e-5, atol=1e-6)


def test_points_nms_keeps_local_maxima_only():
    heat = torch.zeros(1, 1, 4, 4)
    heat[0, 0, 1, 1] = 0.9
    heat[0, 0, 1, 2] = 0.5  # neighbour of the maximum
    heat[0, 0, 3, 3] = 0.4
    kept = points_nms(heat)
    assert kept[0, 0, 1, 1] == 0.9 and kept[0, 0, 1, 2] == 0 and kept[0, 0, 3, 3] == 0.4


def _one_instance_output():
    """One confident cell whose kernel selects a square in mask feature channel 0."""
    cls = torch.full((1, 2, 4, 4), -10.0)
    cls[0, 1, 1, 1] = 5.0
    kernels = torch.zeros(1, 2, 4, 4)
    kernels[0, 0, 1, 1] = 10.0
    feats = torch.full((1, 2, 8, 8), -1.0)
    feats[0, 0, 2:6, 2:6] = 1.0
    return SOLOv2Output([cls], [kernels], feats)


def test_postprocess_returns_masks_at_the_original_size_with_boxes():
    result = postprocess(_one_instance_output(), [(64, 64)], [(128, 96)], (4,), PostprocessConfig())[0]
    assert result["labels"].tolist() == [1]
    assert result["masks"].shape == (1, 128, 96) and result["masks"].dense().dtype == torch.bool
    x0, y0, x1, y1 = result["boxes"][0].tolist()
    # the square covers 16..47 of 64 input pixels -> about 32..95 rows and 24..71 columns
    assert abs(y0 - 32) <= 2 and abs(y1 - 95) <= 2 and abs(x0 - 24) <= 2 and abs(x1 - 71) <= 2
    assert 0.9 < result["scores"][0] <= 1.0


def test_postprocess_with_nothing_above_threshold_is_empty():
    out = _one_instance_output()
    out.cls_logits[0].fill_(-10.0)
    result = postprocess(out, [(64, 64)], [(50, 70)], (4,), PostprocessConfig())[0]
    assert result["masks"].shape == (0, 50, 70) and result["scores"].numel() == 0


def test_minimum_mask_area_is_the_grid_stride_counted_at_stride_4():
    # the mask covers 16 stride-8 pixels = 64 stride-4 pixels
    kept = postprocess(_one_instance_output(), [(64, 64)], [(64, 64)], (32,), PostprocessConfig())[0]
    assert kept["scores"].numel() == 1  # 64 stride-4 pixels is above 32 (at stride 8: 16 > 8)
    dropped = postprocess(_one_instance_output(), [(64, 64)], [(64, 64)], (64,), PostprocessConfig())[0]
    assert dropped["scores"].numel() == 0  # 64 is not above 64


def test_nms_pre_is_taken_after_maskness():
    # cell A: class 0 scored 0.9 but a soft mask (maskness ~0.57); cell B: class 1 scored
    # 0.8 with a confident mask (maskness ~1). With room for one candidate, B must win.
    cls = torch.full((1, 2, 4, 4), -10.0)
    cls[0, 0, 0, 0] = math.log(0.9 / 0.1)
    cls[0, 1, 3, 3] = math.log(0.8 / 0.2)
    kernels = torch.zeros(1, 2, 4, 4)
    kernels[0, 0, 0, 0] = 0.3
    kernels[0, 0, 3, 3] = 10.0
    feats = torch.full((1, 2, 8, 8), -1.0)
    feats[0, 0, 2:6, 2:6] = 1.0
    cfg = PostprocessConfig(nms_pre=1)
    result = postprocess(SOLOv2Output([cls], [kernels], feats), [(64, 64)], [(64, 64)], (4,), cfg)[0]
    assert result["labels"].tolist() == [1]
    assert abs(result["scores"][0].item() - 0.8) < 1e-3
    both = postprocess(SOLOv2Output([cls], [kernels], feats), [(64, 64)], [(64, 64)], (4,), PostprocessConfig())[0]
    assert sorted(both["labels"].tolist()) == [0, 1]  # other classes: Matrix NMS keeps both

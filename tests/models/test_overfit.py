"""The whole model learns: one image with three shapes, overfitted on the CPU."""

import numpy as np
import pytest
import torch

from csrseg import build_model, load_config
from csrseg.data.transforms import normalize


def _three_shapes(size=256):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (90, 110, 100))
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 12, (size, size, 3))
    shapes = [
        (0, lambda d, f: d.ellipse((30, 30, 110, 110), fill=f), (220, 60, 60)),
        (1, lambda d, f: d.rectangle((140, 40, 230, 120), fill=f), (60, 200, 90)),
        (2, lambda d, f: d.polygon([(60, 230), (130, 140), (200, 230)], fill=f), (70, 90, 230)),
    ]
    masks = []
    for label, paint, colour in shapes:
        paint(draw, colour)
        m = Image.new("L", (size, size), 0)
        paint(ImageDraw.Draw(m), 1)
        masks.append(np.asarray(m))
    pixels = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255)
    return pixels, np.stack(masks), np.array([s[0] for s in shapes])


@pytest.mark.numerics
@pytest.mark.parametrize("head", ["solov2", pytest.param("knet", marks=pytest.mark.slow)])
def test_overfits_one_image_with_three_shapes(head):
    torch.manual_seed(0)
    cfg = load_config("demo", ["model.num_classes=3", "model.backbone.weights=none", f"model.head.type={head}",
                               "model.backbone.arch=resnet", "model.backbone.depth=18"])  # whatever the demo uses
    model = build_model(cfg)
    pixels, masks, labels = _three_shapes()
    image = normalize(torch.from_numpy(pixels).permute(2, 0, 1).float(), cfg.input)[None]
    gt_masks = [torch.from_numpy(masks).to(torch.uint8)]
    gt_labels = [torch.from_numpy(labels)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)
    model.train()
    for step in range(200):
        for group in optimizer.param_groups:
            group["lr"] = 1e-3 * min(1.0, (step + 1) / 20)
        losses = model.loss(model(image), gt_labels, gt_masks)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        result = model.predict(image, [(256, 256)], [(256, 256)])[0]
    for label, mask in zip(labels, masks):
        gt = torch.from_numpy(mask).bool()
        candidates = [m for m, lab in zip(result["masks"].dense(), result["labels"]) if lab == label]
        best = max(((m & gt).sum() / (m | gt).sum()).item() for m in candidates) if candidates else 0.0
        assert best > 0.8, f"class {label}: best IoU {best:.2f}"

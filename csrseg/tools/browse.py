"""See a dataset before training on it: ground truth drawn on images, and what the model will see.

:func:`browse_dataset` draws the annotations of N images of a split (any layout
:func:`csrseg.data.sources.resolve_dataset` knows) and summarises the split: images,
instances per class, image sizes, and object sizes (``sqrt(area)``) in pixels both in
the image and at the config's input size (shorter side ``input.short_side``, longer at
most ``input.max_size``, or the crops of ``input.crop``), with what to change where most objects
would be under 16 px there (:mod:`csrseg.data.sizes`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from csrseg.data.transforms import InputConfig
from csrseg.data.coco import DatasetError, decode_segmentation, load_coco_json
from csrseg.data.io import ImageReadError, read_image
from csrseg.data.sizes import SMALL, input_scale, size_advice
from csrseg.data.sources import DatasetSources, resolve_dataset
from csrseg.inference.visualize import draw_instances

@dataclass
class DatasetSummary:
    """What :func:`browse_dataset` found; ``object_px``/``input_px``: ``sqrt(area)`` per instance."""

    source: str
    images: int
    instances_per_class: dict[str, int]
    image_sizes: list[tuple[int, int]]  # (height, width)
    object_px: np.ndarray
    input_px: np.ndarray
    input_size: tuple[int, int]  # (short side, max size)
    drawn: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "PATH: problem" of images that could not be drawn
    advice: list[str] = field(default_factory=list)  # object sizes at the input and what to do if small (data/sizes.py)

    @property
    def small(self) -> int:
        return int((self.input_px < SMALL).sum())

    def text(self) -> str:
        heights = np.array([h for h, _ in self.image_sizes] or [0])
        widths = np.array([w for _, w in self.image_sizes] or [0])
        lines = [self.source, f"images: {self.images}, instances: {len(self.object_px)}, classes: {len(self.instances_per_class)}",
                 f"image sizes (w x h): min {widths.min()}x{heights.min()}, median {int(np.median(widths))}x"
                 f"{int(np.median(heights))}, max {widths.max()}x{heights.max()}",
                 "| class | instances |", "|---|---|"]
        lines += [f"| {name} | {count} |" for name, count in self.instances_per_class.items()]
        if len(self.object_px):
            q = np.percentile(self.object_px, [5, 50, 95])
            r = np.percentile(self.input_px, [5, 50, 95])
            short, longest = self.input_size
            lines.append(f"object size sqrt(area), 5/50/95th percentile: {q[0]:.0f} / {q[1]:.0f} / {q[2]:.0f} px in the "
                         f"images, {r[0]:.1f} / {r[1]:.1f} / {r[2]:.1f} px at the input size (short side {short}, "
                         f"max {longest})")
        lines += self.advice
        lines += [f"warning: {problem} (training would stop on it)" for problem in self.unreadable]
        return "\n".join(lines)


def browse_dataset(data: str | Path | DatasetSources, out: str | Path, input_cfg: InputConfig, images: int = 8,
                   split: str = "train") -> DatasetSummary:
    """Draw ``images`` images of ``split`` with their annotations into ``out`` and summarise the split
    (``out/summary.png`` plots it). Images that cannot be read are skipped from the drawings."""
    sources = data if isinstance(data, DatasetSources) else resolve_dataset(data)
    files = sources.get(split)
    index = load_coco_json(files.annotations)
    names = sources.class_names(index)
    label_of = {c: i for i, c in enumerate(index.cat_ids)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_class: Counter = Counter()
    object_px, input_px = [], []
    for img in index.images:
        scale = input_scale(img["height"], img["width"], input_cfg)
        for ann in index.anns_by_image.get(img["id"], []):
            if ann.get("iscrowd", 0) or ann["category_id"] not in label_of:
                continue
            per_class[names[label_of[ann["category_id"]]]] += 1
            area = ann.get("area") or decode_segmentation(ann["segmentation"], img["height"], img["width"]).sum()
            object_px.append(float(np.sqrt(area)))
            input_px.append(float(np.sqrt(area)) * scale)
    summary = DatasetSummary(
        f"{sources.describe((split,))}", len(index.images), {n: per_class[n] for n in names if per_class[n]},
        [(img["height"], img["width"]) for img in index.images], np.array(object_px), np.array(input_px),
        (input_cfg.short_side, input_cfg.max_size))
    summary.advice = size_advice(summary.object_px, input_cfg, summary.image_sizes)
    step = max(1, len(index.images) // max(images, 1))
    for img in index.images[::step][:images]:
        path = files.images / img["file_name"]
        try:
            image = read_image(path, exif=False)
        except (ImageReadError, DatasetError) as exc:  # named, so it is fixed before training meets it
            summary.unreadable.append(str(exc))
            continue
        anns = [a for a in index.anns_by_image.get(img["id"], []) if a["category_id"] in label_of]
        masks = np.stack([decode_segmentation(a["segmentation"], img["height"], img["width"]) for a in anns]) if anns \
            else np.zeros((0, img["height"], img["width"]), np.uint8)
        target = out / f"{Path(img['file_name']).stem}.jpg"
        draw_instances(image, masks, [label_of[a["category_id"]] for a in anns], None, names).save(target, quality=92)
        summary.drawn.append(target)
    plot_summary(summary, out / "summary.png")
    return summary


def plot_summary(summary: DatasetSummary, path: Path) -> Path:
    """Instances per class, image sizes, and object sizes at the input size (with the 8 px line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cls, ax_img, ax_obj) = plt.subplots(1, 3, figsize=(15, max(4, 0.22 * len(summary.instances_per_class))))
    names = list(summary.instances_per_class)
    ax_cls.barh(range(len(names)), list(summary.instances_per_class.values()))
    ax_cls.set_yticks(range(len(names)), names, fontsize=7)
    ax_cls.invert_yaxis()
    ax_cls.set_xlabel("instances")
    if summary.image_sizes:
        ax_img.scatter([w for _, w in summary.image_sizes], [h for h, _ in summary.image_sizes], s=8, alpha=0.5)
    ax_img.set_xlabel("image width (px)")
    ax_img.set_ylabel("image height (px)")
    if len(summary.input_px):
        bins = np.geomspace(max(0.5, summary.input_px.min()), max(summary.input_px.max(), 1.0) * 1.01, 30)
        ax_obj.hist(summary.input_px, bins=bins)
        ax_obj.set_xscale("log")
    ax_obj.axvline(SMALL, color="red", linestyle="--", label=f"{SMALL:.0f} px")
    ax_obj.set_xlabel(f"object sqrt(area) at input size {summary.input_size[0]}/{summary.input_size[1]} (px)")
    ax_obj.legend()
    with warnings.catch_warnings():  # a class name in a script the font lacks is drawn as boxes, not an error
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def browse(data: str | Path, out: str | Path | None = None, config: str = "paper", overrides: list[str] | tuple[str, ...] = (),
           images: int = 16, split: str = "train", exist_ok: bool = False, layout: str | None = None) -> tuple[DatasetSummary, Path]:
    """What ``csrseg browse`` does: :func:`browse_dataset` at ``config``'s input size into ``out`` (default
    ``runs/browse/exp[N]``), refusing a folder that holds an earlier browse unless ``exist_ok``."""
    from csrseg.config import load_config
    from csrseg.outputs import check_outputs, default_run_dir

    cfg = load_config(config, overrides)
    out = Path(out) if out else default_run_dir("browse", "exp")
    check_outputs(out, ["summary.png"], exist_ok)
    sources = resolve_dataset(data, layout=layout)  # before anything is written
    return browse_dataset(sources, out, cfg.input, images=images, split=split), out

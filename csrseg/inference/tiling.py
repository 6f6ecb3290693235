"""Sliced inference: a large frame cut into overlapping tiles, each tile predicted at the model's own
scale, the instances placed back at full resolution and the duplicates across tiles merged; the whole
frame is also predicted at the normal size, for objects larger than a tile.

A model sees a 1920 x 1080 frame resized to its input size (256 px for the demo): an object 30 px
across becomes 7 px and is lost. Cut into 256 px tiles, each seen at its own pixels, the object keeps
its 30 px. :class:`TiledPredictor` wraps any predictor with ``predict_batch(list of (H, W, 3) uint8)
-> list[list[Instance]]``: a :class:`~csrseg.inference.predictor.Predictor` (tiles batched through
the network) or an :class:`~csrseg.inference.onnx_predictor.OnnxPredictor` (a loop around the
exported graph, which stays one image in, instances out).

The scale a tile is seen at is the predictor's: a model trained on whole images resizes each
``size`` px tile to its ``input.short_side``; one trained on crops (``input.crop``) scales it by its
``input.crop_scale``. So ``--tile`` equal to ``input.short_side`` (or ``input.crop / input.crop_scale``)
sees the frame at its own pixels. Every tile has the same size (the last of a row or column lies flush
with the frame's edge, overlapping its neighbour more), so every tile is seen at the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from csrseg.data.transforms import InputConfig
from csrseg.errors import CsrsegError
from csrseg.inference.predictor import ImageLike, Instance, as_rgb_array
from csrseg.inference.protocol import InstancePredictor
from csrseg.masks.packed import PackedCrop

MIN_TILE = 32
MAX_OVERLAP = 0.9
# An instance whose box comes within this many pixels of a tile edge inside the frame is taken as cut
# by it: the tile saw part of it.
EDGE = 2


@dataclass(frozen=True)
class Tiling:
    """How a frame is sliced.

    ``size``: the tile side in the frame's pixels; ``overlap``: the share of ``size`` neighbouring
    tiles have in common (an object narrower than ``size * overlap`` lies whole in some tile);
    ``whole``: also predict the whole frame at the normal size; ``iou``: two instances of a class with
    a mask IoU at least this are one (the higher score kept); ``ios``: an instance cut by a tile edge is
    part of another of its class when this share of the smaller one lies inside the other (their masks
    then joined); ``batch``: tiles through the network at once; ``max_instances``: the most a frame
    keeps, best score first (COCO's AP looks at the best 100 of an image).
    """

    size: int
    overlap: float = 0.25
    whole: bool = True
    iou: float = 0.5
    ios: float = 0.6
    batch: int = 8
    max_instances: int = 500

    def __post_init__(self) -> None:
        check_tiling(self.size, self.overlap)


def model_tile(input_cfg: InputConfig | None) -> int | None:
    """The tile a model trained on crops predicts in: its crop at the frame's scale,
    ``input.crop / input.crop_scale`` px; ``None`` for a model trained on whole images.

    Such a model has to be: SOLOv2's grid and K-Net's kernels learn object sizes relative to the
    input, so a whole frame at the crop's scale (an input four times the crop's side) is a scale the
    model never saw (benchmarks/RESULTS.md, "Small objects in large frames": 0.0 AP whole, 21 tiled).
    """
    if input_cfg is None or not input_cfg.crop:
        return None
    return max(MIN_TILE, round(input_cfg.crop / input_cfg.crop_scale))


def tiling_for(predictor: InstancePredictor, tile: int | None, overlap: float = 0.25, batch: int = 8) -> Tiling | None:
    """How ``predictor`` slices: ``tile`` as asked, else the tile of a crop-trained model
    (:func:`model_tile`), else ``None`` (whole images). A crop-trained model gets no whole-frame pass:
    it never saw an object larger than its crop."""
    trained_on = model_tile(predictor.input_config)
    size = tile or trained_on
    if size is None:
        return None
    return Tiling(size, overlap, whole=trained_on is None, batch=batch)


def check_tiling(size: int, overlap: float) -> None:
    """A one-line :class:`CsrsegError` for a tile no model can use or an overlap that never advances."""
    if size < MIN_TILE:
        raise CsrsegError(f"--tile {size}: a tile must be at least {MIN_TILE} px")
    if not 0 <= overlap < MAX_OVERLAP:
        raise CsrsegError(f"--overlap {overlap:g}: the overlap is a share of the tile, from 0 to below {MAX_OVERLAP:g}")


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Where the tiles of ``size`` along an axis of ``length`` pixels start: every ``size * (1 - overlap)``
    pixels, the last flush with the end; ``[0]`` when one tile holds the axis."""
    if length <= size:
        return [0]
    step = max(1, int(size * (1 - overlap)))
    return sorted({*range(0, length - size, step), length - size})


def tile_windows(height: int, width: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """The tiles of an ``height`` x ``width`` frame as ``(x0, y0, x1, y1)``, ends exclusive, row by row."""
    return [(x, y, min(x + size, width), min(y + size, height))
            for y in tile_starts(height, size, overlap) for x in tile_starts(width, size, overlap)]


class TiledPredictor:
    """A predictor that slices each frame (:class:`Tiling`); the same interface as the one it wraps
    (``predict``, ``predict_batch``, ``class_names``, ``cat_ids``, ``score_thr``, ``below``).

    A frame that one tile holds is predicted whole, as the wrapped predictor would; without the
    whole-frame pass (a crop-trained model) it is one tile, padded, so the model sees it at the scale
    of its crops. Instances under the wrapped predictor's score threshold are left out tile by tile
    (``below`` counts them per tile).
    """

    def __init__(self, predictor: InstancePredictor, tiling: Tiling) -> None:
        self.predictor = predictor
        self.tiling = tiling
        self.fill = pad_colour(predictor)

    @property
    def class_names(self) -> list[str]:
        return self.predictor.class_names

    @class_names.setter
    def class_names(self, names: list[str]) -> None:
        self.predictor.class_names = names

    @property
    def cat_ids(self) -> list[int]:
        return self.predictor.cat_ids

    @property
    def score_thr(self) -> float:
        return self.predictor.score_thr

    @property
    def below(self):
        return self.predictor.below

    @property
    def input_config(self):
        return self.predictor.input_config

    def predict_batch(self, images: list[ImageLike]) -> list[list[Instance]]:
        return [self.predict(image) for image in images]

    def predict(self, image: ImageLike) -> list[Instance]:
        """The instances of one frame, tiles and whole frame merged, best score first."""
        frame = as_rgb_array(image)
        height, width = frame.shape[:2]
        size = self.tiling.size
        windows = tile_windows(height, width, size, self.tiling.overlap)
        if len(windows) == 1 and self.tiling.whole:  # nothing to slice: the frame as the model sees images
            return self.predictor.predict_batch([frame])[0]
        found: list[tuple[Instance, bool]] = []
        if self.tiling.whole:
            found += [(inst, False) for inst in self.predictor.predict_batch([frame])[0]]
        for start in range(0, len(windows), self.tiling.batch):
            chunk = windows[start : start + self.tiling.batch]
            tiles = [self._tile(frame, window) for window in chunk]
            for window, instances in zip(chunk, self.predictor.predict_batch(tiles)):
                found += [placed for inst in instances if (placed := place(inst, window, (height, width)))]
        return merge_instances(found, self.tiling.iou, self.tiling.ios, self.tiling.max_instances)

    def _tile(self, frame: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
        """The frame's pixels in ``window``, padded with the input mean to a full tile (a frame narrower
        than a tile), so every tile is seen at the same scale."""
        x0, y0, x1, y1 = window
        size = self.tiling.size
        part = frame[y0:y1, x0:x1]  # a frame smaller than a tile in a direction: padded there
        if part.shape[:2] == (size, size):
            return np.ascontiguousarray(part)
        tile = np.empty((size, size, 3), dtype=np.uint8)
        tile[:] = self.fill
        tile[: y1 - y0, : x1 - x0] = part
        return tile


def pad_colour(predictor: InstancePredictor) -> np.ndarray:
    """The colour the network's own padding stands for (the input mean, as uint8 RGB)."""
    input_cfg = predictor.input_config
    mean = input_cfg.mean if input_cfg is not None else InputConfig().mean
    return np.round(np.asarray(mean, dtype=np.float64) * 255).astype(np.uint8)


def place(inst: Instance, window: tuple[int, int, int, int], frame_size: tuple[int, int]) -> tuple[Instance, bool] | None:
    """A tile's instance -> the same instance in the frame (its crop clipped to the tile's pixels of
    the frame, its box moved), and whether a tile edge inside the frame cuts it; ``None`` when nothing of
    it lies on the frame (it was found in the padding)."""
    x0, y0, x1, y1 = window
    crop = inst.crop[: max(0, y1 - y0 - inst.origin[1]), : max(0, x1 - x0 - inst.origin[0])]
    rows, cols = np.flatnonzero(crop.any(axis=1)), np.flatnonzero(crop.any(axis=0))
    if not len(rows):
        return None
    crop = crop[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    bx0, by0 = x0 + inst.origin[0] + int(cols[0]), y0 + inst.origin[1] + int(rows[0])
    bx1, by1 = bx0 + crop.shape[1] - 1, by0 + crop.shape[0] - 1
    height, width = frame_size
    cut = ((x0 > 0 and bx0 <= x0 + EDGE) or (y0 > 0 and by0 <= y0 + EDGE)
           or (x1 < width and bx1 >= x1 - 1 - EDGE) or (y1 < height and by1 >= y1 - 1 - EDGE))
    box = (float(bx0), float(by0), float(bx1), float(by1))
    return replace(inst, packed=PackedCrop.pack(crop), box=box, image_size=(int(height), int(width))), cut


@dataclass
class _Kept:
    """An instance of the merged result being built: its mask as a crop at ``(x0, y0)``."""

    inst: Instance
    crop: np.ndarray
    x0: int
    y0: int
    area: int
    cut: bool
    joined: bool = False  # another instance's mask was added to it

    @property
    def x1(self) -> int:
        return self.x0 + self.crop.shape[1] - 1

    @property
    def y1(self) -> int:
        return self.y0 + self.crop.shape[0] - 1

    def instance(self) -> Instance:
        if not self.joined:  # its mask and box as found: packed already
            return self.inst
        box = (float(self.x0), float(self.y0), float(self.x1), float(self.y1))
        return replace(self.inst, packed=PackedCrop.pack(self.crop), box=box)


def merge_instances(found: list[tuple[Instance, bool]], iou: float = 0.5, ios: float = 0.6,
                    max_instances: int | None = None) -> list[Instance]:
    """Instances of one frame from its tiles and the whole-frame pass, each with whether a tile edge cuts
    it -> one instance per object, best score first (ties in the order found).

    Greedy, best score first, within a class: an instance is a duplicate of one already kept when their
    masks' IoU is at least ``iou`` (it is dropped), or, where one of them is cut by a tile edge, when at
    least ``ios`` of the smaller mask lies in the other (their masks are joined: the cut part completes
    or lies within the other). Mask IoU alone would keep a cut half beside the whole object (IoU about
    0.5 or less); intersection over the smaller alone would let a large wrong mask swallow the small
    objects inside it, which the tiles found whole. At most ``max_instances`` are kept: the rest,
    scoring lower, are not looked at.
    """
    order = sorted(range(len(found)), key=lambda i: -found[i][0].score)
    kept: list[_Kept] = []
    boxes = np.zeros((0, 4), dtype=np.int64)
    labels = np.zeros((0,), dtype=np.int64)
    for i in order:
        if max_instances is not None and len(kept) >= max_instances:
            break
        inst, cut = found[i]
        x0, y0 = inst.origin
        crop = inst.crop
        item = _Kept(inst, crop, x0, y0, int(np.count_nonzero(crop)), cut)
        overlapping = np.flatnonzero((labels == inst.label) & (boxes[:, 0] <= item.x1) & (boxes[:, 2] >= x0)
                                     & (boxes[:, 1] <= item.y1) & (boxes[:, 3] >= y0))
        match, join = _best_match(item, [kept[k] for k in overlapping], iou, ios)
        if match is None:
            kept.append(item)
            boxes = np.concatenate([boxes, [[item.x0, item.y0, item.x1, item.y1]]])
            labels = np.append(labels, inst.label)
            continue
        k = int(overlapping[match])
        if join:
            kept[k] = _join(kept[k], item)
            boxes[k] = (kept[k].x0, kept[k].y0, kept[k].x1, kept[k].y1)
    return [k.instance() for k in kept]


def _best_match(item: _Kept, others: list[_Kept], iou: float, ios: float) -> tuple[int | None, bool]:
    """The index in ``others`` of the instance ``item`` duplicates (the highest overlap), and whether
    their masks are to be joined; ``(None, False)`` for none."""
    best, best_overlap, best_join = None, 0.0, False
    for index, other in enumerate(others):
        inter = _intersection(item, other)
        if not inter:
            continue
        union = item.area + other.area - inter
        if inter / union >= iou and inter / union > best_overlap:
            best, best_overlap, best_join = index, inter / union, item.cut or other.cut
        elif (item.cut or other.cut) and inter / min(item.area, other.area) >= ios and inter / union > best_overlap:
            best, best_overlap, best_join = index, inter / union, True
    return best, best_join


def _intersection(a: _Kept, b: _Kept) -> int:
    """Pixels two masks share (their crops compared over the boxes' intersection)."""
    x0, y0, x1, y1 = max(a.x0, b.x0), max(a.y0, b.y0), min(a.x1, b.x1), min(a.y1, b.y1)
    if x1 < x0 or y1 < y0:
        return 0
    part_a = a.crop[y0 - a.y0 : y1 - a.y0 + 1, x0 - a.x0 : x1 - a.x0 + 1]
    part_b = b.crop[y0 - b.y0 : y1 - b.y0 + 1, x0 - b.x0 : x1 - b.x0 + 1]
    return int(np.count_nonzero(part_a & part_b))


def _join(kept: _Kept, other: _Kept) -> _Kept:
    """``kept`` with ``other``'s mask added (its score and class stay): cut only if both were."""
    x0, y0 = min(kept.x0, other.x0), min(kept.y0, other.y0)
    x1, y1 = max(kept.x1, other.x1), max(kept.y1, other.y1)
    crop = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=bool)
    for part in (kept, other):
        crop[part.y0 - y0 : part.y1 - y0 + 1, part.x0 - x0 : part.x1 - x0 + 1] |= part.crop
    return _Kept(kept.inst, crop, x0, y0, int(crop.sum()), kept.cut and other.cut, joined=True)

"""Synthetic clips whose identities are known: shapes that move, cross and pass behind occluders,
drawn with numpy, with the detections a detector would make of them. What the tracker's tests and
``benchmarks/tracking_synthetic.py`` score it on.

Each object moves at a constant velocity. An object in front hides the ones behind it, and an
occluder (a grey pillar) hides every object; what is left of an object is its *visible* mask. Its
detection scores as much as it shows (a half-hidden object scores about half: the case ByteTrack's
second stage is for); one showing under a fifth of itself is not detected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BACKGROUND = 30
OCCLUDER_GREY = 128
LEAST_VISIBLE = 0.2  # an object showing less than this share of itself is not detected


@dataclass(frozen=True)
class Mover:
    """One object: ``identity``, its ``shape`` (``"square"`` or ``"disc"``) of ``size`` px, its
    centre at frame 0 and its ``velocity`` in px per frame; ``depth`` 0 is in front of 1."""

    identity: int
    centre: tuple[float, float]
    velocity: tuple[float, float]
    size: int = 20
    shape: str = "square"
    depth: int = 0
    colour: tuple[int, int, int] = (230, 230, 230)
    category_id: int = 1


@dataclass(frozen=True)
class Scene:
    """``movers`` over ``frames`` frames of ``width`` x ``height``; ``occluders``: ``(x0, y0, x1, y1)``
    inclusive rectangles in front of everything."""

    name: str
    movers: tuple[Mover, ...]
    frames: int = 40
    width: int = 160
    height: int = 120
    occluders: tuple[tuple[int, int, int, int], ...] = ()


@dataclass
class Seen:
    """What is visible of one object in one frame: its mask ``crop`` at ``origin``, tight ``box``."""

    identity: int
    category_id: int
    crop: np.ndarray  # (y1 - y0 + 1, x1 - x0 + 1) bool
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 inclusive
    visible: float  # the share of the object's pixels in view

    @property
    def origin(self) -> tuple[int, int]:
        return int(self.box[0]), int(self.box[1])


@dataclass
class SyntheticDetection:
    """A detection as the tracker reads it (box, score, category_id, crop, origin), with the
    ``identity`` of what it sees (``None`` for a false positive), which the tracker never reads."""

    box: tuple[float, float, float, float]
    score: float
    category_id: int
    crop: np.ndarray
    identity: int | None = None

    @property
    def origin(self) -> tuple[int, int]:
        return int(self.box[0]), int(self.box[1])


@dataclass
class SceneFrame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    seen: list[Seen] = field(default_factory=list)  # every object showing at least LEAST_VISIBLE


def _full_mask(mover: Mover, frame: int, height: int, width: int) -> np.ndarray:
    cx = mover.centre[0] + mover.velocity[0] * frame
    cy = mover.centre[1] + mover.velocity[1] * frame
    ys, xs = np.mgrid[0:height, 0:width]
    half = mover.size / 2
    if mover.shape == "disc":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= half**2
    return (np.abs(xs - cx) <= half - 0.5) & (np.abs(ys - cy) <= half - 0.5)


def render(scene: Scene, frame: int) -> SceneFrame:
    """Frame ``frame`` of ``scene``: the picture and what shows of each object."""
    h, w = scene.height, scene.width
    image = np.full((h, w, 3), BACKGROUND, np.uint8)
    hidden = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in scene.occluders:
        hidden[y0 : y1 + 1, x0 : x1 + 1] = True
    out = SceneFrame(image)
    for mover in sorted(scene.movers, key=lambda m: m.depth):  # front to back
        full = _full_mask(mover, frame, h, w)
        area = int(full.sum())
        visible = full & ~hidden
        hidden |= full
        image[visible] = mover.colour
        share = visible.sum() / area if area else 0.0
        if share < LEAST_VISIBLE:
            continue
        rows, cols = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
        box = (float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1]))
        out.seen.append(Seen(mover.identity, mover.category_id,
                             visible[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy(), box, float(share)))
    for x0, y0, x1, y1 in scene.occluders:
        image[y0 : y1 + 1, x0 : x1 + 1] = OCCLUDER_GREY
    return out


def detect(frame: SceneFrame, rng: np.random.Generator, *, miss: float = 0.0, clutter: float = 0.0,
           noise: float = 0.03) -> list[SyntheticDetection]:
    """The detections of ``frame``: each object seen scores its visible share (+ Gaussian ``noise``),
    is missed with probability ``miss``; with probability ``clutter`` a false detection (a 6 px square
    scoring from 0.1 to 0.45, under ByteTrack's default ``high``) is added somewhere."""
    found = []
    for seen in frame.seen:
        if rng.random() < miss:
            continue
        score = float(np.clip(0.97 * seen.visible + rng.normal(0, noise), 0.01, 0.99))
        found.append(SyntheticDetection(seen.box, score, seen.category_id, seen.crop, seen.identity))
    if rng.random() < clutter:
        h, w = frame.image.shape[:2]
        x, y = int(rng.integers(0, w - 6)), int(rng.integers(0, h - 6))
        found.append(SyntheticDetection((x, y, x + 5, y + 5), float(rng.uniform(0.1, 0.45)), 1, np.ones((6, 6), bool)))
    order = rng.permutation(len(found))  # a detector's order says nothing of identity
    return [found[i] for i in order]


def standard_scenes() -> list[Scene]:
    """The three clips of the tests and the benchmark: ``moving`` (three shapes on their own paths),
    ``crossing`` (two squares of one class passing through each other, the far one hidden at the
    crossing) and ``occluded`` (a disc behind a pillar for several frames, another passing in front)."""
    return [
        Scene("moving", (Mover(1, (15, 20), (3.0, 0.25)), Mover(2, (140, 60), (-1.0, 0.0), shape="disc", size=18),
                         Mover(3, (20, 100), (2.5, -0.125), size=16, category_id=2))),
        Scene("crossing", (Mover(1, (15, 58), (3.5, 0.0), depth=0), Mover(2, (145, 64), (-3.5, 0.0), depth=1,
                                                                         colour=(200, 120, 40)))),
        Scene("occluded", (Mover(1, (10, 40), (4.0, 0.0), shape="disc", size=18),
                           Mover(2, (150, 95), (-3.0, 0.0), size=16)), occluders=((66, 20, 109, 70),)),
    ]

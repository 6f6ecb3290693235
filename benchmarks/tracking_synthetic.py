"""ID switches, MOTA and IDF1 of csrseg's ByteTrack on the synthetic clips of csrseg.tracking.scenes
(moving, crossing, occluded), box and mask IoU, over seeds of detector noise (misses and clutter).

    PYTHONPATH=. python benchmarks/tracking_synthetic.py --seeds 5 --miss 0.05 --clutter 0.2

No model: the detections are the visible masks of the shapes, scored by the share in view.
"""

from __future__ import annotations

import argparse

import numpy as np

from csrseg.tracking import ByteTracker, TrackerConfig
from csrseg.tracking.metrics import mot_metrics
from csrseg.tracking.scenes import detect, render, standard_scenes


def run(scene, config, seed, miss, clutter):
    rng, tracker = np.random.default_rng(seed), ByteTracker(config)
    truth, tracked = [], []
    for f in range(scene.frames):
        frame = render(scene, f)
        detections = detect(frame, rng, miss=miss, clutter=clutter)
        ids = tracker.update(detections)
        truth.append({s.identity: s.box for s in frame.seen})
        tracked.append({i: d.box for i, d in zip(ids, detections) if i is not None})
    return mot_metrics(truth, tracked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--miss", type=float, default=0.05)
    parser.add_argument("--clutter", type=float, default=0.2)
    args = parser.parse_args()
    print("| clip | IoU | objects (boxes) | ID switches | tracks (true) | misses | false positives | MOTA | IDF1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scene in standard_scenes():
        for iou in ("box", "mask"):
            runs = [run(scene, TrackerConfig(iou=iou), seed, args.miss, args.clutter) for seed in range(args.seeds)]
            total = lambda field: sum(getattr(m, field) for m in runs)  # noqa: E731
            print(f"| {scene.name} | {iou} | {total('objects')} | {total('switches')} | "
                  f"{total('tracks') / len(runs):.1f} ({len(scene.movers)}) | {total('misses')} | {total('false_positives')} | "
                  f"{np.mean([m.mota for m in runs]):.3f} | {np.mean([m.idf1 for m in runs]):.3f} |")


if __name__ == "__main__":
    main()

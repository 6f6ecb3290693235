"""Shared fixtures: small configs and a generated COCO-format dataset."""

from __future__ import annotations

import dataclasses
import time
import urllib.error
from pathlib import Path

import pytest
import torch

from csrseg.config import Config, load_config, to_dict
from csrseg.engine.checkpoint import atomic_save
from csrseg.engine.trainer import Hook
from csrseg.models import build_model
from csrseg.data.synth import CLASSES as SYNTH_CLASSES
from csrseg.data.synth import SynthSpec, make_synthetic_dataset

torch.set_num_threads(max(1, torch.get_num_threads()))

CLASSES = list(SYNTH_CLASSES)  # the synthetic dataset's class names


def one_line_error(capsys, *parts: str) -> str:
    """The stderr of a refused command: one ``csrseg: error:`` line holding every one of ``parts``."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("csrseg: error:") and "\n" not in err, err
    for part in parts:
        assert part in err, (part, err)
    return err


def exit_code(argv: list[str]) -> int:
    """``csrseg argv``'s exit status, whether the verb returned it or argparse ended the parse
    (its refusals of a bad option raise ``SystemExit``)."""
    from csrseg.cli import main

    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def ablation(data, table: int, out, **options):
    """``run_ablation`` with the sweep's fields (``base``, ``seeds``, ``rows`` ...) and the run's options
    (``device``, ``jobs`` ...) given side by side, as ``csrseg ablate`` takes them."""
    import dataclasses

    from csrseg.research.ablate import Sweep, run_ablation

    fields = {f.name for f in dataclasses.fields(Sweep)}
    sweep = Sweep(table, **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k in fields})
    return run_ablation(data, sweep, out, **{k: v for k, v in options.items() if k not in fields})


def tiny_config(**train: object) -> Config:
    """The demo config made smaller still: fast enough for many tests on 2 cores."""
    cfg = load_config(
        "demo",
        [
            "model.backbone.arch=resnet", "model.backbone.depth=18",  # independent of the demo's backbone
            "model.neck.channels=32", "model.neck.csr_channels=32", "model.neck.num_groups=8",
            "model.head.feat_channels=32", "model.head.kernel_dim=16", "model.head.stacked_convs=1",
            "model.head.num_groups=8", "input.short_side=128", "input.max_size=128", "train.workers=0",
            "train.precision=fp32",  # bit-for-bit comparisons between runs need fp32
        ],
    )
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def match_instances(ours: list, theirs: list, min_iou: float = 0.99, score_tol: float = 1e-3) -> list[tuple]:
    """Pair two instance lists (objects with ``label``, ``score``, ``mask``) one-to-one by class and
    mask IoU, whatever their order: two runtimes may rank near-equal scores either way round.

    Returns the pairs; raises ``AssertionError`` naming the first instance without a partner.
    """
    assert len(ours) == len(theirs), f"{len(ours)} instances against {len(theirs)}"
    free = list(range(len(theirs)))
    pairs = []
    for a in ours:
        best, best_iou = None, min_iou
        for j in free:
            b = theirs[j]
            if b.label != a.label or abs(a.score - b.score) > score_tol:
                continue
            union = (a.mask | b.mask).sum()
            iou = (a.mask & b.mask).sum() / union if union else 1.0
            if iou >= best_iou:
                best, best_iou = j, iou
        assert best is not None, f"no partner for class {a.label} scored {a.score:.5f}"
        free.remove(best)
        pairs.append((a, theirs[best]))
    return pairs


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path_factory):
    """The precision probe's cache in the test session's own folder: never a developer's ~/.cache."""
    monkeypatch.setenv("CSRSEG_CACHE", str(tmp_path_factory.getbasetemp() / "csrseg_cache"))


@pytest.fixture(autouse=True)
def _never_download(monkeypatch, tmp_path_factory):
    """Tests never download: an empty torch hub cache, and a downloader that refuses."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(f"tests never download ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """12 train + 4 val images of 128 px."""
    root = tmp_path_factory.mktemp("synth")
    return make_synthetic_dataset(root, 16, seed=3, val_fraction=0.25, spec=SynthSpec(image_size=128))


def fake_checkpoint(tmp_path: Path, cls_bias: float) -> Path:
    """An untrained tiny SOLOv2-head model made to score candidates everywhere, saved as a checkpoint."""
    torch.manual_seed(0)
    cfg = tiny_config()
    # SOLOv2's own mask output (the `*-solov2` presets'): with it this untrained model gives the few
    # dozen candidates the parity test needs; the demo's plain output fills all 100 slots with
    # near-equal scores, whose cut the two runtimes may place differently
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head=dataclasses.replace(cfg.model.head, mask_out_norm=True)))
    model = build_model(cfg)
    with torch.no_grad():  # an untrained model scores nothing; make it see things everywhere
        model.head.cls_out.weight.normal_(0, 0.5)
        model.head.cls_out.bias.fill_(cls_bias)
        model.head.kernel_out.weight.normal_(0, 0.2)
    path = tmp_path / "model.pt"
    atomic_save(dict(model=model.state_dict(), config=to_dict(cfg), classes=CLASSES, cat_ids=[1, 2, 3, 4]), path)
    return path


def wait_for(condition, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    return False


def train_rows(run_dir):
    log = run_dir / "log.jsonl"
    return log.read_text().count('"type": "train"') if log.is_file() else 0


class SaveGradients(Hook):
    """Saves every parameter's gradient after each backward (DDP: the averaged one) as
    ``folder/step<N>_rank<R>.pt``: what the DDP equivalence test compares."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def after_backward(self, trainer) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        torch.save(grads, self.folder / f"step{trainer.state.iteration}_rank{trainer.env.rank}.pt")


def pytest_sessionfinish(session, exitstatus):
    """A child process a test left running would hang the suite at exit, after its summary (a DataLoader
    worker ignores SIGTERM, which is how multiprocessing ends children at exit): end them here, and
    fail the run naming them."""
    import multiprocessing
    import sys

    left = multiprocessing.active_children()
    for child in left:
        child.kill()
        child.join(5)
    if left:
        print(f"\nerror: {len(left)} child processes were left running: {', '.join(c.name for c in left)}",
              file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

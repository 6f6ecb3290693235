"""The Python API of the README: ``from csrseg import train, evaluate, Predictor``."""

import numpy as np

import csrseg
from tests.conftest import tiny_config


def test_train_evaluate_predict_as_in_the_readme(synth_root, tmp_path):
    from csrseg import Predictor, evaluate, train

    run = train(synth_root, config=tiny_config(max_iters=2, batch_size=6), out=tmp_path / "run", epochs=1,
                progress=False)
    assert run.best is not None and run.best.is_file() and run.iterations == 2
    report = evaluate(run.best, data=synth_root)
    assert {"mask", "box", "classes"} <= set(report) and report["images"] == 4
    assert (tmp_path / "run" / "results_val.metrics.json").is_file()
    image = np.zeros((64, 80, 3), np.uint8)
    instances = Predictor(run.best, device="cpu", score_thr=0.0).predict(image)
    assert all(inst.mask.shape == (64, 80) for inst in instances)


def test_unknown_attribute_is_an_attribute_error():
    try:
        csrseg.no_such_thing
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("csrseg.no_such_thing did not raise")


def test_the_resume_rules_hold_from_python(synth_root, tmp_path):
    """What ``csrseg train --resume`` refuses, ``csrseg.train(resume=...)`` refuses too."""
    import pytest

    from csrseg import load_config, train
    from csrseg.errors import CsrsegError

    cfg = tiny_config(max_iters=1, batch_size=4, epochs=1)
    run = tmp_path / "run"
    train(synth_root, config=cfg, out=run, device="cpu", progress=False, val_split=None)
    with pytest.raises(CsrsegError, match="a file; --resume takes the run folder"):
        train(resume=run / "last.pt")
    with pytest.raises(CsrsegError, match="run folder not found"):
        train(resume=tmp_path / "nowhere")
    with pytest.raises(CsrsegError, match="a resumed run continues in its own folder"):
        train(resume=run, out=tmp_path / "elsewhere")
    with pytest.raises(CsrsegError, match="--config paper with --resume .* continues with its own"):
        train(resume=run, config="paper")
    with pytest.raises(CsrsegError, match="another config with --resume"):
        train(resume=run, config=tiny_config(max_iters=1, batch_size=4, epochs=1, lr=0.5))
    # its own config, as an object, and no data: the run recorded its dataset
    result = train(resume=run, config=cfg, overrides=["train.max_iters=2"], device="cpu", progress=False,
                   val_split=None)
    assert result.iterations == 2 and load_config(str(run / "config.yaml")).train.max_iters == 2


def test_predict_and_export_are_python_functions_too(tmp_path):
    from PIL import Image

    from csrseg import export, predict
    from tests.conftest import fake_checkpoint

    weights = fake_checkpoint(tmp_path, cls_bias=-3.0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.png").write_text("not an image")
    result = predict([folder], weights=weights, out=tmp_path / "pred", score_thr=0.0, device="cpu")
    assert result.counts.images == 3 and len(result.counts.skipped_files) == 1
    assert result.predictions.is_file() and sorted(p.name for p in result.out_dir.glob("*.jpg")) == ["0.jpg", "1.jpg", "2.jpg"]
    exported = export(tmp_path / "w.safetensors", weights=weights, format="safetensors")
    assert exported.path.is_file() and exported.format == "safetensors"


def test_bad_values_are_refused_in_one_line_on_every_way_into_train(synth_root, tmp_path, capsys):
    """``--set`` values no run could use are refused before anything is written, for a fresh run from the
    CLI and from Python and for a resumed run: the overrides pass the one door ``load_config`` uses."""
    import pytest

    from tests.conftest import one_line_error
    from csrseg import train
    from csrseg.cli import main
    from csrseg.errors import ConfigError

    fresh = tmp_path / "fresh"
    for bad, said in (("train.lr=-1", "train.lr must be above 0, got -1.0"),
                      ("train.batch_size=0", "train.batch_size must be at least 1, got 0")):
        assert main(["train", "--config", "demo", "--data", str(synth_root), "--out", str(fresh), "--set", bad]) == 2
        one_line_error(capsys, "--set", said)
        with pytest.raises(ConfigError, match=said):
            train(synth_root, config="demo", out=fresh, overrides=[bad], progress=False)
        assert not fresh.exists()
    run = tmp_path / "run"
    train(synth_root, config=tiny_config(max_iters=1, batch_size=4, epochs=1), out=run, device="cpu", progress=False, val_split=None)
    before = (run / "last.pt").stat().st_mtime_ns
    with pytest.raises(ConfigError, match="train.lr must be above 0"):
        train(resume=run, overrides=["train.lr=-1"], progress=False)
    with pytest.raises(ConfigError, match="train.epochs must be at least 1"):
        train(synth_root, config="demo", out=tmp_path / "e", epochs=0, progress=False)
    assert (run / "last.pt").stat().st_mtime_ns == before


def test_the_verbs_take_names_after_their_first_argument():
    """A reordering of a verb's parameters cannot silently change what a caller passes (issue 33)."""
    import inspect

    from csrseg import evaluate, export, predict, train
    from csrseg.research.benchmark import benchmark

    for verb in (train, evaluate, predict, export, benchmark):
        params = list(inspect.signature(verb).parameters.values())
        assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, verb.__name__
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), verb.__name__

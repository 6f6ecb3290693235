"""The Python API of the README: ``from csrseg import train, evaluate, Predictor``."""

import numpy as np

import csrseg
from conftest import tiny_config


def test_train_evaluate_predict_as_in_the_readme(synth_root, tmp_path):
    from csrseg import Predictor, evaluate, train

    run = train(synth_root, config=tiny_config(max_iters=2, batch_size=6), out=tmp_path / "run", epochs=1,
                progress=False)
    assert run.best is not None and run.best.is_file() and run.iterations == 2
    report = evaluate(run.best, synth_root)
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

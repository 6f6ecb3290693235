"""The Python API: one function per verb, the only implementation of each (the CLI parses, calls
these and prints)::

    from csrseg import train, evaluate, predict, export, Predictor
    run = train("my_data.yaml", config="demo", out="runs/mine", epochs=12)
    report = evaluate(run.best, data="my_data.yaml")      # mask + box AP, per class
    result = predict(["photos/", "clip.mp4"], weights=run.best)   # overlays + predictions.json
    export("model.onnx", weights=run.best)
    for inst in Predictor(run.best).predict("photo.jpg"):
        print(inst.class_name, inst.score)

``csrseg.benchmark`` (:func:`csrseg.research.benchmark.benchmark`) times the models side by side.
"""

from csrseg.api.evaluate import evaluate, report_path
from csrseg.api.export import ExportResult, export
from csrseg.api.predict import PredictResult, predict
from csrseg.api.train import TrainResult, train

__all__ = ["ExportResult", "PredictResult", "TrainResult", "evaluate", "export", "predict", "report_path", "train"]

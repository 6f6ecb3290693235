"""The Python API: one function per verb, the only implementation of each (the CLI parses, calls
these and prints)::

    from csrseg import train, evaluate, Predictor
    run = train("my_data.yaml", config="demo", out="runs/mine", epochs=12)
    report = evaluate(run.best, "my_data.yaml")           # mask + box AP, per class
    for inst in Predictor(run.best).predict("photo.jpg"):
        print(inst.class_name, inst.score)
"""

from csrseg.api.evaluate import evaluate, report_path
from csrseg.api.train import TrainResult, train

__all__ = ["TrainResult", "evaluate", "report_path", "train"]

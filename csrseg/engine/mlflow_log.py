"""MLflow as a run logger (``pip install 'csrseg[mlflow]'``, ``--logger mlflow``).

The tracking store is MLflow's own choice: ``$MLFLOW_TRACKING_URI`` (a server, or a local
``sqlite:///mlflow.db``), else MLflow's default. The experiment is ``$MLFLOW_EXPERIMENT_NAME``
(default ``csrseg``), the run named after the run folder, the config's fields its parameters.
"""

from __future__ import annotations

import os
import time

from csrseg.config import to_dict
from csrseg.engine.row_logger import RowLogger
from csrseg.engine.trainer import Trainer

#: MLflow takes at most 100 parameters per call
PARAMS_PER_BATCH = 100


class MlflowLog(RowLogger):
    """Scalars ``<type>/<key>`` as metrics at step ``iter``; the run marked finished at the end of training."""

    name = "mlflow"

    def start(self, trainer: Trainer, run_id: str | None) -> str:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        if run_id is not None:  # a resumed run goes on in its own MLflow run, its parameters already there
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "csrseg")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        run = self.client.create_run(experiment_id, run_name=trainer.run_dir.name,
                                     tags={"csrseg.run_dir": str(trainer.run_dir.resolve())})
        params = [Param(key, str(value)[:500]) for key, value in _flatten(to_dict(trainer.cfg)).items()]
        for i in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(run.info.run_id, params=params[i:i + PARAMS_PER_BATCH])
        return run.info.run_id

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, float(v), now, step) for key, v in values.items()])

    def finish(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": 1e-4}``."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat

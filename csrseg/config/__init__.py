"""The run's configuration: one frozen dataclass tree, built from a preset or a YAML file and
``--set key.sub=value`` overrides.

- :mod:`csrseg.config.schema`: :class:`Config` (model + input + train) and the training recipe;
  the model's and the input pipeline's settings are their own folders' (``csrseg.models.config``,
  each head's ``config.py``, ``csrseg.data.transforms.InputConfig``);
- :mod:`csrseg.config.presets`: the named configs (the paper's network, Tables II/III, the demo);
- :mod:`csrseg.config.load`: :func:`load_config`, checks of the values, saving;
- :mod:`csrseg.config.fields`: dataclasses to and from dicts, overrides;
- :mod:`csrseg.config.legacy`: configs of older checkpoints and run folders read as today's.
"""

from csrseg.config.fields import from_dict, merge, parse_overrides, to_dict
from csrseg.config.load import (
    apply_overrides,
    check_values,
    config_from_dict,
    from_scratch_unfrozen,
    load_config,
    save_config,
    without_pretrained,
)
from csrseg.config.schema import PRECISIONS, SCHEDULES, Config, TrainConfig
from csrseg.errors import ConfigError

__all__ = [
    "PRECISIONS", "SCHEDULES", "Config", "ConfigError", "TrainConfig", "check_values", "config_from_dict", "from_dict",
    "apply_overrides", "from_scratch_unfrozen", "load_config", "merge", "parse_overrides", "save_config", "to_dict", "without_pretrained",
]

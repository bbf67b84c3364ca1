"""Configuration: yacs defaults, YAML loading with checked keys and types, derived names and paths.

    cfg = load_cfg("experiments/synthetic/posedual.yaml", ["TRAIN.LR", "0.002"])  # frozen
"""
from .defaults import get_defaults
from .loader import dump_cfg, load_cfg, to_plain
from .merge import ConfigError, ConfigTypeError, UnknownKeyError
from .paths import apply_dirs, experiment_dir, model_name

__all__ = [
    "ConfigError", "ConfigTypeError", "UnknownKeyError", "apply_dirs", "dump_cfg", "experiment_dir",
    "get_defaults", "load_cfg", "model_name", "to_plain",
]

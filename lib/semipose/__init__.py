"""semipose: semi-supervised 2D human pose estimation (PoseCons / PoseDual)."""

__version__ = "0.2.0"

# The Python interface (see semipose/api.py):
#     cfg = semipose.load_cfg("experiments/synthetic/supervised.yaml", {"TRAIN.END_EPOCH": 2})
#     run = semipose.train(cfg)                     # run.run_dir, run.results, run.model_file
#     semipose.evaluate(cfg, run.model_file)        # row -> (metrics, main metric)
#     semipose.PoseEstimator.from_checkpoint(cfg, run.model_file)(image)  # [N, J, 3] keypoints
# The names are imported on first use, so that `import semipose` (and the `semipose` command's
# help) does not load torch.
_LAZY = {
    "load_cfg": "semipose.api",
    "train": "semipose.api",
    "evaluate": "semipose.api",
    "TrainResult": "semipose.api",
    "PoseEstimator": "semipose.inference",
    "Trainer": "semipose.engine.trainer",
}

__all__ = ["__version__", "load_cfg", "train", "evaluate", "TrainResult", "PoseEstimator",
           "Trainer"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'semipose' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

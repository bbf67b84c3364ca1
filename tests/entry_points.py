"""Load the command-line scripts of pose_estimation/ and bench/ as modules (they are scripts, not
a package)."""
from __future__ import annotations

import importlib.util
import os
from types import ModuleType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str, folder: str = "pose_estimation") -> ModuleType:
    """<folder>/<name>.py as a module, e.g. load_script("train").main([...]) or
    load_script("ssl_benchmark", "bench")."""
    path = os.path.join(ROOT, folder, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

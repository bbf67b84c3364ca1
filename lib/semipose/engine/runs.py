"""One folder per training run, so that a new run never overwrites an earlier one.

An experiment folder (``config.experiment_dir``: OUTPUT_DIR/<dataset>/<model>/<cfg name>) holds
one run folder per training run, ``run_<YYYYmmdd-HHMMSS>`` (or RUN_NAME), and ``latest``, a link
to the newest. TRAIN.RESUME continues ``latest`` when it has a checkpoint; otherwise, and always
with RESUME False, a new run folder is made. Experiment folders of the earlier flat layout
(checkpoints directly inside) are still found and resumed.
"""
from __future__ import annotations

import os
import time
from typing import Optional

from yacs.config import CfgNode

from ..config import experiment_dir
from ..errors import RunFolderError
from ..utils.dist import DistInfo, all_gather_objects
from .checkpoint import CHECKPOINT, FINAL

LATEST = "latest"
_MARKERS = (CHECKPOINT, FINAL)


def _has_run(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, m)) for m in _MARKERS)


def latest_run(experiment: str) -> Optional[str]:
    """The newest run folder of an experiment folder (or the folder itself in the flat layout)."""
    link = os.path.join(experiment, LATEST)
    if os.path.isdir(link):
        return os.path.realpath(link)
    if os.path.isfile(link):  # where links are unavailable, 'latest' is a file with the name
        with open(link) as f:
            name = f.read().strip()
        if name and os.path.isdir(os.path.join(experiment, name)):
            return os.path.join(experiment, name)
    runs = sorted(d for d in os.listdir(experiment) if d.startswith("run_")
                  and os.path.isdir(os.path.join(experiment, d))) if os.path.isdir(experiment) else []
    if runs:
        return os.path.join(experiment, runs[-1])
    return experiment if _has_run(experiment) else None


def point_latest(experiment: str, name: str) -> None:
    """Make ``<experiment>/latest`` name the run ``name`` (atomic replace)."""
    link = os.path.join(experiment, LATEST)
    tmp = os.path.join(experiment, f".tmp_{os.getpid()}_{LATEST}")
    try:
        os.symlink(name, tmp)
    except (OSError, NotImplementedError):
        with open(tmp, "w") as f:
            f.write(name + "\n")
    if os.path.isdir(link) and not os.path.islink(link):
        raise FileExistsError(f"{link} is a folder; rename it so that 'latest' can point at "
                              f"the newest run")
    os.replace(tmp, link)


def new_run(experiment: str, name: str = "") -> str:
    """Create a fresh run folder (a timestamp, with a counter when taken) and point latest at it."""
    os.makedirs(experiment, exist_ok=True)
    base = name or "run_" + time.strftime("%Y%m%d-%H%M%S")
    folder, k = os.path.join(experiment, base), 1
    while True:
        try:
            os.mkdir(folder)
            break
        except FileExistsError:
            if name:  # a named run is reused (RUN_NAME), never renamed
                break
            k += 1
            folder = os.path.join(experiment, f"{base}_{k}")
    point_latest(experiment, os.path.basename(folder))
    return folder


def choose_run_folder(cfg: CfgNode, cfg_path: str, info: DistInfo) -> str:
    """The run folder of this training: rank 0 decides, every rank gets the same path."""
    folder = ""
    if info.is_main:
        experiment = experiment_dir(cfg, cfg_path)
        name = cfg.get("RUN_NAME", "")
        previous = os.path.join(experiment, name) if name else latest_run(experiment)
        if name and not cfg.TRAIN.RESUME and _has_run(previous):
            raise RunFolderError(f"RUN_NAME {name!r} already holds a run in {experiment}; set "
                                 f"TRAIN.RESUME True to continue it, or choose another RUN_NAME")
        if cfg.TRAIN.RESUME and previous and _has_run(previous):
            folder = previous
            if name:
                point_latest(experiment, name)
        else:
            folder = new_run(experiment, name)
    return all_gather_objects(folder, info)[0]


LOCK = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_run_folder(folder: str) -> str:
    """Claim ``folder`` for this process (``<folder>/.lock`` holding host and pid).

    A lock of a live process on this host is an error naming it, so a second run (e.g. a resume
    while the first still trains) can neither write the same checkpoints nor remove the first
    one's in-flight temporary files. A lock left by a dead process is taken over. The lock goes
    when this process exits (or with :func:`unlock_run_folder`).
    """
    import atexit
    import socket

    path = os.path.join(folder, LOCK)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    host, pid = f.read().split()
            except (OSError, ValueError):  # half-written or unreadable: a dead writer's
                host, pid = "", "0"
            if f"{host} {pid}" == me:
                return path
            if host == socket.gethostname() and _alive(int(pid)):
                raise RunFolderError(f"run folder {folder} is in use by process {pid} on this "
                                     f"machine (it holds {path}); wait for that run to end or "
                                     f"stop it, or start a separate run with TRAIN.RESUME False")
            if host and host != socket.gethostname():
                raise RunFolderError(f"run folder {folder} is locked by process {pid} on {host} "
                                     f"({path}); if that run is gone, delete the file")
            os.remove(path)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        atexit.register(unlock_run_folder, folder)
        return path
    raise RunFolderError(f"could not lock run folder {folder} ({path} keeps reappearing)")


def unlock_run_folder(folder: str) -> None:
    """Remove this process's lock of ``folder`` (another process's lock is left alone)."""
    import socket
    path = os.path.join(folder, LOCK)
    try:
        with open(path) as f:
            if f.read().split() == [socket.gethostname(), str(os.getpid())]:
                os.remove(path)
    except OSError:
        pass


def find_model_file(cfg: CfgNode, cfg_path: str) -> str:
    """Default weights of valid.py / demo.py / export.py: TEST.MODEL_FILE, else the final weights
    of the experiment's latest run."""
    if cfg.TEST.MODEL_FILE:
        return cfg.TEST.MODEL_FILE
    experiment = experiment_dir(cfg, cfg_path)
    run = latest_run(experiment) or experiment
    return os.path.join(run, FINAL)

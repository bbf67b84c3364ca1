"""Command-line pieces shared by pose_estimation/train.py and valid.py."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any, Callable, List, Optional, Sequence, Tuple

from yacs.config import CfgNode

from ..config import apply_dirs, load_cfg
from ..errors import UserError
from ..utils.dist import DistInfo, cleanup, init_distributed, stuck_ranks

# Errors that mean "fix the input": every UserError (a bad config key or value, a missing or
# unreadable file, a dataset without persons, a checkpoint of another model, ...) and any OSError
# (a file the operating system cannot open or write, a full disk). Their messages name the file
# or key and what to do, so the command-line tools print them as one line. Anything else, a plain
# ValueError or KeyError included, is a bug and keeps its traceback.
USER_ERRORS = (UserError, OSError)

# Set to 1 to print the traceback of user errors too (above their one line; same exit status).
TRACEBACK_ENV = "SEMIPOSE_TRACEBACK"


STUCK_RANK = ("a collective operation waited DIST_TIMEOUT_S={t:g} s for the other ranks: one of "
              "them is stuck or stopped (e.g. SIGSTOP, a hung data loader); the job ends here. "
              "Raise DIST_TIMEOUT_S if a rank legitimately needs longer (e.g. a long validation)")


def is_collective_timeout(exc: BaseException) -> bool:
    """A torch.distributed collective that timed out (gloo and nccl word it differently)."""
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("timed out" in text or "timeout" in text)


def traceback_wanted() -> bool:
    """Whether SEMIPOSE_TRACEBACK asks for the tracebacks of user errors (1, true, yes, on)."""
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def report(line: str, exc: BaseException) -> None:
    """Print a one-line error to stderr; with SEMIPOSE_TRACEBACK set, the traceback first, so
    that the one line stays the last thing printed."""
    if traceback_wanted():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(line, file=sys.stderr)


def error_line(exc: BaseException) -> str:
    """The one-line message of a user error.

    A DataLoader re-raises a worker's error with the worker's traceback in the message; only its
    last line (the original message) is kept.
    """
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if "Original Traceback" in text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        head, sep, rest = lines[-1].partition(": ")
        text = (rest if sep and " " not in head else lines[-1]) + " (in a DataLoader worker)"
    return " ".join(text.split())


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description,
        epilog="Trailing KEY VALUE pairs override config keys, e.g. TRAIN.END_EPOCH 5 DEVICE cpu.")
    p.add_argument("--cfg", default="", help="experiment YAML file (required)")
    p.add_argument("--print-config", dest="print_config", action="store_true",
                   help="print the merged config (YAML, _BASE_ files, flags and overrides) and exit")
    p.add_argument("--list-keys", dest="list_keys", action="store_true",
                   help="list every config key with its default and meaning, and exit")
    p.add_argument("--gpus", default="", help="GPU ids, e.g. '0' (sets DEVICE cuda:<first id>; "
                   "use torchrun for several GPUs)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (WORKERS)")
    p.add_argument("--modelDir", default="", help="override OUTPUT_DIR")
    p.add_argument("--logDir", default="", help="override LOG_DIR (TensorBoard root)")
    p.add_argument("--dataDir", default="", help="prefix for DATASET.ROOT, model files, OUTPUT_DIR")
    p.add_argument("--data-format", dest="data_format", default="",
                   help="DATASET.DATA_FORMAT: 'jpg' (folders) or 'zip' (<folder>.zip archives)")
    p.add_argument("--frequent", type=int, default=None, help="log every N iterations (PRINT_FREQ)")
    p.add_argument("--NoDebug", default="", help="non-empty: DEBUG.DEBUG False, TEST.SAVE_RESULT False")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--distributed", action="store_true",
                   help="join a process group (torch.distributed.launch); torchrun needs no flag")
    p.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None,
                   help="set by torch.distributed.launch (LOCAL_RANK also read from the environment)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides (flags may come before or after them)")
    return p


def parse_cli(p: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None
              ) -> argparse.Namespace:
    """Parse flags and KEY VALUE overrides in any order; handle --list-keys; require --cfg."""
    args = p.parse_intermixed_args(argv)
    if args.list_keys:
        from ..config.describe import format_key_docs
        print(format_key_docs())
        raise SystemExit(0)
    if not args.cfg:
        p.error("--cfg FILE is required (an experiment YAML, e.g. experiments/synthetic/posedual.yaml)")
    return args


def flag_opts(args: argparse.Namespace) -> List[str]:
    """Config overrides implied by the common flags."""
    opts: List[str] = []
    if args.gpus:
        opts += ["GPUS", args.gpus, "DEVICE", f"cuda:{args.gpus.split(',')[0].strip()}"]
    if args.workers is not None:
        opts += ["WORKERS", str(args.workers)]
    if args.data_format:
        opts += ["DATASET.DATA_FORMAT", args.data_format]
    if args.frequent is not None:
        opts += ["PRINT_FREQ", str(args.frequent)]
    if args.NoDebug:
        opts += ["DEBUG.DEBUG", "False", "TEST.SAVE_RESULT", "False"]
    return opts


def load_from_args(args: argparse.Namespace, extra: Sequence[str] = ()) -> CfgNode:
    """The frozen config: YAML, then flag overrides, then trailing KEY VALUE pairs, then dirs."""
    cfg = load_cfg(args.cfg, list(flag_opts(args)) + list(extra) + list(args.opts or []))
    return apply_dirs(cfg, args.modelDir, args.logDir, args.dataDir)


def run_job(args: argparse.Namespace, extra: Sequence[str],
            job: Callable[[CfgNode, DistInfo], Any],
            exit_codes: Sequence[Tuple[type, int]] = ()) -> int:
    """Load the config, join the process group, run ``job(cfg, info)``; the exit status.

    ``exit_codes``: (exception type, status) pairs printed as one 'error:' line, checked before
    the user errors (USER_ERRORS, status 2); any other exception keeps its traceback. With
    SEMIPOSE_TRACEBACK=1 the one-line errors print their traceback too.
    """
    info = DistInfo()
    try:
        cfg = load_from_args(args, extra)
        if getattr(args, "print_config", False):
            import yaml
            from ..config import to_plain
            print(yaml.safe_dump(to_plain(cfg), default_flow_style=None, sort_keys=False), end="")
            return 0
        info = init_distributed(cfg.DEVICE, force=args.distributed, local_rank_arg=args.local_rank,
                                timeout_s=cfg.DIST_TIMEOUT_S)
        job(cfg, info)
    except BaseException as exc:
        if info.distributed and is_collective_timeout(exc):
            stuck = stuck_ranks()
            who = f"; rank(s) {stuck} did not respond" if stuck else ""
            report(f"error: rank {info.rank}: {STUCK_RANK.format(t=cfg.DIST_TIMEOUT_S)}{who} "
                   f"({error_line(exc)[:200]})", exc)
            return 4
        for kind, status in exit_codes:
            if isinstance(exc, kind):
                report(f"error: {exc}", exc)
                return status
        if isinstance(exc, USER_ERRORS):
            report(f"error: {error_line(exc)}", exc)
            return 2
        raise
    finally:
        cleanup(info)
    return 0

"""The ``semipose`` command: one entry point for every tool of the package.

    semipose train --cfg experiments/synthetic/posedual.yaml [KEY VALUE ...]
    semipose <command> --help
    python -m semipose <command> ...          (the same, without the installed command)

Each command is a module of this package with ``main(argv, prog) -> int``; the scripts in
pose_estimation/ call the same functions, so both take the same options and exit alike (0 done,
2 a user error printed as one 'error: ...' line, 3 a non-finite training loss). A command's
module is imported only when it runs: ``semipose --help`` and ``semipose keys`` do not load
torch.
"""
from __future__ import annotations

import difflib
import importlib
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

PROG = "semipose"

# name -> (module of this package, the line shown by ``semipose --help``)
COMMANDS: Dict[str, Tuple[str, str]] = {
    "train": ("train", "train a pose model from an experiment YAML (MODEL.NAME picks the method)"),
    "valid": ("valid", "score a trained model on the validation set (COCO AP, PCKh, AIC, custom)"),
    "demo": ("demo", "run a trained model on an image, a folder or a video; draw the skeletons"),
    "export": ("export", "export a trained net (or the PoseDual ensemble) to ONNX and check it"),
    "convert": ("convert", "turn DeepLabCut / Lightning Pose labels into a custom dataset"),
    "bench": ("bench", "the synthetic SSL benchmark (bench/ssl_benchmark.py, source checkout)"),
    "compare": ("compare", "compare runs: final and best metrics, differing config keys, curves"),
    "keys": ("keys", "list the config keys with defaults and meanings, optionally filtered"),
}


def version() -> str:
    from .. import __version__
    return __version__


def usage() -> str:
    """The text of ``semipose --help``."""
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {PROG} <command> [options] [KEY VALUE ...]",
             f"       {PROG} <command> --help",
             f"       {PROG} --version",
             "",
             "Semi-supervised 2D pose estimation: train, score, run and compare pose models.",
             "",
             "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["",
              "options:",
              "  -h, --help  show this help and exit",
              "  --version   print the version and exit",
              "",
              "Trailing KEY VALUE pairs override config keys (train, valid, demo, export), e.g.",
              f"  {PROG} train --cfg experiments/synthetic/supervised.yaml TRAIN.END_EPOCH 2"]
    return "\n".join(lines)


def exit_status(code: Any) -> int:
    """The status a SystemExit carries, as the interpreter would turn it into one."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"): printed, status 1
    return 1


def _user_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``semipose <command> ...``: run the command; returns the exit status."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(f"{PROG} {version()}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        names = ", ".join(COMMANDS)
        if name.startswith("-"):
            return _user_error(f"unknown option {name!r}: give a command first ({names}); "
                               f"see {PROG} --help")
        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return _user_error(f"unknown command {name!r}; {hint}the commands are {names} "
                           f"(see {PROG} --help)")
    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    try:
        return exit_status(module.main(args[1:], prog=f"{PROG} {name}"))
    except SystemExit as stop:  # argparse's --help and usage errors, --list-keys
        return exit_status(stop.code)


__all__ = ["COMMANDS", "main", "usage"]

"""Compare training runs: their final and best validation metrics, the config keys they differ
in, and their validation curves in one picture (``semipose compare``).

A run folder is what training writes (engine/runs.py): ``config.yaml`` (the full merged config),
``results.json`` (the last validation: row -> metrics and main metric), ``history.json`` (every
logged scalar per step; ``val_<row>/<metric>`` per epoch) and the checkpoints. An experiment
folder (OUTPUT_DIR/<dataset>/<model>/<config name>) stands for its latest run.

    from semipose.engine.compare import compare_runs, plot_comparison
    comparison = compare_runs(["output/.../posedual", "output/.../supervised/run_x"])
    print(comparison.markdown())
    plot_comparison(comparison, "compare.png")
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from ..errors import ConfigError, DataError, MissingFileError, RunFolderError
from ..utils.io import read_json

CONFIG, RESULTS, HISTORY = "config.yaml", "results.json", "history.json"
EPOCH_TAG = "epoch/loss"  # logged once per finished epoch (EpochScalars): the epochs done
MISSING = "–"  # a cell without a value (a row or key the run does not have)

EXPECTED = (f"expected a run folder as training writes it (OUTPUT_DIR/<dataset>/<model>/<config "
            f"name>/run_<time>, holding {CONFIG}, {RESULTS}, {HISTORY}) or an experiment folder "
            f"holding run_* folders")


def scalar_tag(metric: str) -> str:
    """The history tag of a metric name (engine/log.py: 'Ap .5' -> 'AP.5', 'AP (M)' -> 'AP_M')."""
    from .log import scalar_tag as tag
    return tag(metric)


def lower_is_better(metric: str) -> bool:
    """Pixel errors ('px error', 'px <joint>' of custom datasets) fall as a model improves;
    AP, AR, PCK and PCKh rise."""
    return scalar_tag(metric).lower().startswith("px")


def resolve_run(path: str) -> str:
    """The run folder ``path`` names: itself, or the latest run of an experiment folder.
    Raises MissingFileError / RunFolderError naming the folder and what was expected."""
    if not os.path.exists(path):
        raise MissingFileError(f"run folder {path!r} not found; {EXPECTED}")
    if not os.path.isdir(path):
        raise RunFolderError(f"{path} is a file, not a run folder; {EXPECTED}")
    if os.path.isfile(os.path.join(path, CONFIG)):
        return os.path.realpath(path)
    from .runs import latest_run
    latest = latest_run(path)
    if latest and os.path.realpath(latest) != os.path.realpath(path):
        if os.path.isfile(os.path.join(latest, CONFIG)):
            return os.path.realpath(latest)
        raise RunFolderError(f"{path} is an experiment folder, but its latest run {latest} has "
                             f"no {CONFIG}; {EXPECTED}")
    raise RunFolderError(f"{path} is not a run folder (no {CONFIG}, no run_* folders, no "
                         f"'latest' link); {EXPECTED}")


@dataclass
class RunRecord:
    """What a run folder tells about the run (read by :func:`load_run`)."""

    path: str  # the run folder (links resolved)
    config: Dict[str, Any]  # config.yaml as a nested dict
    results: Dict[str, Dict[str, Any]]  # results.json rows: row -> {"metrics": {...}, "main": v}
    history: Dict[str, List[List[float]]]  # history.json: tag -> [[step, value], ...]
    label: str = ""  # the short name in tables and legends (unique among compared runs)

    @property
    def method(self) -> str:
        return str(self.config.get("MODEL", {}).get("NAME", ""))

    @property
    def end_epoch(self) -> Optional[int]:
        value = self.config.get("TRAIN", {}).get("END_EPOCH")
        return int(value) if value is not None else None

    @property
    def epochs_done(self) -> Optional[int]:
        """Finished epochs (the last epoch logged; None before the first one ends)."""
        steps = [int(s) for s, _ in self.history.get(EPOCH_TAG, [])]
        return max(steps) if steps else None

    @property
    def rows(self) -> List[str]:
        """Validation rows (net1, net2, ensemble, mean, ...): results.json's order, then rows
        found only in the history."""
        out = list(self.results)
        for tag in self.history:
            if tag.startswith("val_") and "/" in tag:
                row = tag[len("val_"):].split("/", 1)[0]
                if row not in out:
                    out.append(row)
        return out

    def metric_names(self) -> List[str]:
        """Metric names of the run: results.json's names, then history tags of other metrics."""
        names: List[str] = []
        for row in self.results.values():
            names += [k for k in row.get("metrics", {}) if k not in names]
        tags = {scalar_tag(n) for n in names}
        for tag in self.history:
            if tag.startswith("val_") and "/" in tag:
                name = tag.split("/", 1)[1]
                if name not in tags:
                    names.append(name)
                    tags.add(name)
        return names

    def curve(self, row: str, metric: str) -> List[Tuple[int, float]]:
        """(epoch, value) of ``metric`` of ``row`` at each validation, epoch order (a resumed
        run that logged an epoch twice keeps the later value)."""
        points = dict((int(s), float(v)) for s, v in
                      self.history.get(f"val_{row}/{scalar_tag(metric)}", []))
        return sorted(points.items())

    def final(self, row: str, metric: str) -> Optional[float]:
        """``metric`` of ``row`` at the last validation (results.json; else the history)."""
        metrics = self.results.get(row, {}).get("metrics", {})
        for name, value in metrics.items():
            if scalar_tag(name) == scalar_tag(metric):
                return float(value)
        curve = self.curve(row, metric)
        return curve[-1][1] if curve else None

    def best(self, row: str, metric: str) -> Optional[Tuple[float, int]]:
        """(best value, its epoch) over the validations in the history (the highest; the lowest
        for pixel errors). NaN values never count as best; the first epoch wins a tie."""
        curve = [(e, v) for e, v in self.curve(row, metric) if not math.isnan(v)]
        if not curve:
            return None
        sign = -1.0 if lower_is_better(metric) else 1.0
        epoch, value = max(curve, key=lambda p: (sign * p[1], -p[0]))
        return value, epoch


def load_run(path: str) -> RunRecord:
    """The run of ``path`` (a run folder, or an experiment folder's latest run)."""
    folder = resolve_run(path)
    try:
        with open(os.path.join(folder, CONFIG), encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise DataError(f"{os.path.join(folder, CONFIG)} is not valid YAML ({err}); the run "
                        f"folder is damaged") from err
    if not isinstance(config, dict):
        raise DataError(f"{os.path.join(folder, CONFIG)} holds no config mapping")
    results: Dict[str, Any] = {}
    path_results = os.path.join(folder, RESULTS)
    if os.path.isfile(path_results):
        data = read_json(path_results, "validation results")
        results = data.get("rows", {}) if isinstance(data, dict) else {}
    history: Dict[str, Any] = {}
    path_history = os.path.join(folder, HISTORY)
    if os.path.isfile(path_history):
        data = read_json(path_history, "scalar history")
        history = data if isinstance(data, dict) else {}
    return RunRecord(folder, config, results, history)


def flatten(config: Mapping[str, Any], prefix: str = "") -> "OrderedDict[str, Any]":
    """Nested config -> {"A.B.C": value} in file order."""
    out: "OrderedDict[str, Any]" = OrderedDict()
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def format_value(value: Any) -> str:
    """A config value as it would be written on the command line ('' shown as '')."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


_ABSENT = object()  # a key one config has and another lacks (e.g. ResNet against HRNet keys)


def differing_keys(configs: Sequence[Mapping[str, Any]]) -> "OrderedDict[str, List[str]]":
    """Flattened keys whose values are not the same in all ``configs``: key -> the formatted
    value per config (MISSING where a config lacks the key). Order: first seen."""
    flat = [flatten(c) for c in configs]
    keys: List[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    out: "OrderedDict[str, List[str]]" = OrderedDict()
    for key in keys:
        values = [f.get(key, _ABSENT) for f in flat]
        if any(_norm(v) != _norm(values[0]) for v in values[1:]):
            out[key] = [MISSING if v is _ABSENT else format_value(v) for v in values]
    return out


def _norm(value: Any) -> Any:
    """Lists and tuples compare alike (YAML gives lists; a dict config may hold tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    return value


def short_labels(paths: Sequence[str]) -> List[str]:
    """Short unique names for run folders: the path parts in which the runs differ (parts that
    every run shares are dropped), without the run_<time> folder where the rest is unique;
    a single run is named by its last two parts (<config name>/<run>)."""
    parts = [os.path.normpath(os.path.abspath(p)).split(os.sep)[1:] for p in paths]
    if len(parts) == 1:
        return ["/".join(parts[0][-2:])]
    shared = set.intersection(*(set(p) for p in parts))
    labels = ["/".join(x for x in p if x not in shared) or p[-1] for p in parts]
    if len(set(labels)) < len(labels):  # a folder repeated: fall back to full paths' tails
        depth = [2] * len(parts)
        while True:
            labels = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
            clash = {lab for lab in labels if labels.count(lab) > 1}
            grow = [k for k, lab in enumerate(labels) if lab in clash and depth[k] < len(parts[k])]
            if not grow:
                return labels
            for k in grow:
                depth[k] += 1
    heads = [lab.rsplit("/", 1)[0] if "/" in lab else "" for lab in labels]
    if all(heads) and len(set(heads)) == len(heads):  # the run_<time> part adds nothing
        return heads
    return labels


def default_metric(run: RunRecord) -> str:
    """The metric a run is selected on: PCKh 'Mean' for MPII / AI Challenger, else 'AP'; for
    other evaluators the metric whose value is results.json's main one."""
    names = run.metric_names()
    dataset = str(run.config.get("DATASET", {}).get("TEST_DATASET", ""))
    preferred = "Mean" if dataset in ("mpii", "ai_challenger") else "AP"
    if preferred in names or not run.results:
        return preferred
    row = next(iter(run.results.values()))
    main = row.get("main")
    return next((k for k, v in row.get("metrics", {}).items() if v == main), preferred)


def _cell(value: Optional[float]) -> str:
    return MISSING if value is None else f"{value:.4f}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(_md(h) for h in head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines


@dataclass
class Comparison:
    """Runs side by side on one metric (see :func:`compare_runs`)."""

    runs: List[RunRecord]
    metric: str
    rows: List[str] = field(default_factory=list)  # validation rows of any run, first seen

    def differing(self) -> "OrderedDict[str, List[str]]":
        return differing_keys([r.config for r in self.runs])

    def metrics_table(self) -> List[List[str]]:
        """One line per run: run, method, epochs, then final and best per validation row."""
        out = []
        for run in self.runs:
            done, end = run.epochs_done, run.end_epoch
            line = [run.label, run.method or MISSING,
                    f"{MISSING if done is None else done}/{MISSING if end is None else end}"]
            for row in self.rows:
                best = run.best(row, self.metric) if row in run.rows else None
                line += [_cell(run.final(row, self.metric) if row in run.rows else None),
                         MISSING if best is None else f"{best[0]:.4f} (epoch {best[1]})"]
            out.append(line)
        return out

    def markdown(self) -> str:
        """Both tables as markdown: the metrics, then the config keys that differ."""
        best = "lowest" if lower_is_better(self.metric) else "highest"
        head = ["run", "method", "epochs"]
        for row in self.rows:
            head += [f"{row} final", f"{row} best"]
        lines = [f"Validation {self.metric}: final = the last validation ({RESULTS}), best = "
                 f"the {best} over the validations ({HISTORY}) and its epoch; epochs = "
                 f"finished / TRAIN.END_EPOCH.", ""]
        lines += _table(head, self.metrics_table())
        lines += [""]
        diff = self.differing()
        if len(self.runs) < 2:
            lines.append("One run: no configs to compare.")
        elif not diff:
            lines.append("The runs' configs are the same.")
        else:
            lines += [f"Config keys that differ ({len(diff)}):", ""]
            lines += _table(["key"] + [r.label for r in self.runs],
                            [[key] + values for key, values in diff.items()])
        lines += ["", "Runs:"] + [f"- {r.label}: {r.path}" for r in self.runs]
        return "\n".join(lines)


def compare_runs(paths: Sequence[str], metric: Optional[str] = None) -> Comparison:
    """Load the runs of ``paths`` (run or experiment folders) and line them up on ``metric``
    (a results.json name such as 'AP' or 'AP (M)', or its history tag 'AP_M'; default the
    first run's selection metric). Raises ConfigError for a metric no run reports."""
    if not paths:
        raise ConfigError("compare: give at least one run folder")
    runs = [load_run(p) for p in paths]
    for run, label in zip(runs, short_labels([r.path for r in runs])):
        run.label = label
    if metric is None:
        metric = default_metric(runs[0])
    else:
        known: List[str] = []
        for run in runs:
            known += [n for n in run.metric_names() if n not in known]
        match = [n for n in known if scalar_tag(n).lower() == scalar_tag(metric).lower()]
        if not match and known:
            raise ConfigError(f"--metric {metric!r}: the runs report {', '.join(known)}")
        metric = match[0] if match else metric
    rows: List[str] = []
    for run in runs:
        rows += [r for r in run.rows if r not in rows]
    return Comparison(runs, metric, rows)


_STYLES = ["-", "--", ":", "-."]  # per validation row (net1, net2, ensemble, ...)
_MARKERS = ["o", "s", "^", "D", "v", "P"]


def plot_comparison(comparison: Comparison, path: str) -> str:
    """The validation curves (metric against epoch; a colour per run, a line style per
    validation row) as a PNG at ``path``, written atomically. Returns ``path``."""
    if not path.lower().endswith(".png"):
        raise ConfigError(f"--out {path!r}: the picture is a PNG; give a file name ending in .png")
    from .visualize import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    colours = plt.get_cmap("tab10").colors
    last = 0
    for k, run in enumerate(comparison.runs):
        for j, row in enumerate(comparison.rows):
            curve = run.curve(row, comparison.metric)
            if not curve:
                continue
            epochs, values = zip(*curve)
            last = max(last, max(epochs))
            ax.plot(epochs, values, color=colours[k % len(colours)],
                    linestyle=_STYLES[j % len(_STYLES)], marker=_MARKERS[j % len(_MARKERS)],
                    markersize=5, label=f"{run.label} [{row}]")
    metric = comparison.metric
    ax.set(title=f"validation {metric} per epoch", xlabel="epoch", ylabel=metric)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
        fig.legend(loc="outside lower center", ncols=2 if len(ax.lines) > 3 else 1, fontsize=9)
    else:
        ax.text(0.5, 0.5, "no validation results yet", ha="center", va="center",
                transform=ax.transAxes)
    save_figure(fig, path)
    return path


__all__ = ["Comparison", "RunRecord", "compare_runs", "differing_keys", "flatten", "load_run",
           "plot_comparison", "resolve_run", "short_labels"]

"""The user-error family (semipose.errors) and how the command-line tools report errors: a
UserError is one 'error: ...' line and exit status 2; any other exception, a plain ValueError or
KeyError included, keeps its traceback; SEMIPOSE_TRACEBACK=1 prints the traceback of user errors
too."""
from __future__ import annotations

import json
import os
import pickle
import traceback

import pytest

from semipose import errors
from semipose.engine.cli import TRACEBACK_ENV, USER_ERRORS, base_parser, parse_cli, run_job

from conftest import TINY
from entry_points import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")

# Each class and the builtin the code raised at its sites before the family existed: code and
# tests that catch the builtin keep working.
BUILTINS = [
    (errors.ConfigError, ValueError),
    (errors.UnknownKeyError, ValueError),
    (errors.ConfigTypeError, ValueError),
    (errors.ConfigTypeError, TypeError),
    (errors.ConfigLookupError, KeyError),
    (errors.ConfigLookupError, ValueError),
    (errors.MissingFileError, FileNotFoundError),
    (errors.DataError, ValueError),
    (errors.UnsupportedImageError, ValueError),
    (errors.ImageReadError, OSError),
    (errors.WeightsError, ValueError),
    (errors.CheckpointError, RuntimeError),
    (errors.RunFolderError, ValueError),
]


@pytest.mark.parametrize("cls, builtin", BUILTINS, ids=lambda v: v.__name__)
def test_each_user_error_is_still_its_builtin(cls, builtin):
    err = cls("DATASET.ROOT 'x' has no images; fix DATASET.ROOT")
    assert isinstance(err, errors.UserError) and isinstance(err, builtin)
    with pytest.raises(builtin, match="has no images"):
        raise err


@pytest.mark.parametrize("cls", sorted({c for c, _ in BUILTINS}, key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)
def test_user_errors_cross_the_dataloader_worker_boundary(cls):
    """A DataLoader re-raises a worker's error as ``type(message)``; multiprocessing pickles it."""
    msg = "cannot read image 'a.jpg': empty file (0 bytes); replace it"
    again = cls(msg)
    assert type(again) is cls and msg in str(again)
    back = pickle.loads(pickle.dumps(again))
    assert type(back) is cls and str(back) == str(again)


def test_the_old_import_paths_name_the_same_classes():
    from semipose.config import ConfigError as from_config
    from semipose.config.merge import ConfigError, ConfigTypeError, UnknownKeyError
    from semipose.data.imageio import ImageReadError, UnsupportedImageError
    from semipose.engine.checkpoint import CheckpointError
    assert from_config is ConfigError is errors.ConfigError
    assert (UnknownKeyError, ConfigTypeError) == (errors.UnknownKeyError, errors.ConfigTypeError)
    assert (ImageReadError, UnsupportedImageError) == (errors.ImageReadError,
                                                       errors.UnsupportedImageError)
    assert CheckpointError is errors.CheckpointError
    # the image error keeps its two-argument form and its attributes
    err = ImageReadError("a/b.jpg", "truncated JPEG")
    assert str(err) == "cannot read image 'a/b.jpg': truncated JPEG"
    assert (err.path, err.reason) == ("a/b.jpg", "truncated JPEG")


def test_a_lookup_error_prints_its_message_unquoted():
    err = errors.ConfigLookupError("DATASET.TRAIN_DATASET 'nope' is unknown; available: ['coco']")
    assert str(err) == "DATASET.TRAIN_DATASET 'nope' is unknown; available: ['coco']"
    assert str(KeyError("k")) == "'k'"  # (a plain KeyError quotes)


def test_user_errors_are_user_errors_and_os_errors_only():
    assert USER_ERRORS == (errors.UserError, OSError)
    assert not issubclass(ValueError, USER_ERRORS) and not issubclass(KeyError, USER_ERRORS)


# ------------------------------------------------------------------------------ library sites
def test_library_sites_raise_the_family(tmp_path):
    from semipose.config import load_cfg
    from semipose.data.build import build_train_dataset
    from semipose.utils.io import read_json
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(errors.MissingFileError, match="nope.yaml"):
        load_cfg(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(errors.DataError, match="is not valid JSON"):
        read_json(str(broken), "annotation file")
    cfg = load_cfg(SUPERVISED)
    cfg.defrost()
    cfg.DATASET.TRAIN_DATASET = "nope"  # past the config checks: a registry lookup fails
    with pytest.raises(errors.ConfigLookupError, match="DATASET.TRAIN_DATASET 'nope'"):
        build_train_dataset(cfg)


# ------------------------------------------------------------------------------ run_job
def _args():
    return parse_cli(base_parser("test"), ["--cfg", SUPERVISED, "DEVICE", "cpu"])


def _buggy_key(cfg, info):
    return {}["sup_heatmaps"]  # a method's bug, not the user's


def _buggy_value(cfg, info):
    return int("twelve")


def _no_persons(cfg, info):
    raise errors.DataError("COCO set 'val2017' produced no person records; check the file")


@pytest.mark.parametrize("job, kind", [(_buggy_key, KeyError), (_buggy_value, ValueError)])
def test_a_bug_keeps_its_traceback(job, kind, capsys):
    with pytest.raises(kind) as err:
        run_job(_args(), [], job)
    frames = [f.name for f in traceback.extract_tb(err.value.__traceback__)]
    assert job.__name__ in frames  # the traceback reaches the line that failed
    assert "error:" not in capsys.readouterr().err  # not reported as a user error


@pytest.mark.parametrize("value", ["", "0"])
def test_a_user_error_is_one_line_and_status_2(value, monkeypatch, capsys):
    monkeypatch.setenv(TRACEBACK_ENV, value)
    assert run_job(_args(), [], _no_persons) == 2
    err = capsys.readouterr().err
    assert err == "error: COCO set 'val2017' produced no person records; check the file\n"


def test_a_lookup_error_line_is_unquoted(capsys):
    def job(cfg, info):
        raise errors.ConfigLookupError("DATASET.TEST_DATASET 'x' is unknown; available: []")
    assert run_job(_args(), [], job) == 2
    assert capsys.readouterr().err == "error: DATASET.TEST_DATASET 'x' is unknown; available: []\n"


def test_semipose_traceback_shows_where_a_user_error_came_from(monkeypatch, capsys):
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    assert run_job(_args(), [], _no_persons) == 2  # the same status
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "_no_persons" in err
    assert "semipose.errors.DataError: COCO set 'val2017'" in err
    # the one line is still there, last
    assert err.splitlines()[-1] == ("error: COCO set 'val2017' produced no person records; "
                                    "check the file")


def test_semipose_traceback_covers_the_other_one_line_errors(monkeypatch, capsys):
    class Diverged(RuntimeError):
        pass

    def job(cfg, info):
        raise Diverged("loss is nan at step 3")
    assert run_job(_args(), [], job, exit_codes=[(Diverged, 3)]) == 3
    assert capsys.readouterr().err == "error: loss is nan at step 3\n"
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    assert run_job(_args(), [], job, exit_codes=[(Diverged, 3)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "error: loss is nan at step 3"


def test_an_os_error_stays_a_user_error(capsys):
    def job(cfg, info):
        open(os.path.join(os.sep, "no", "such", "folder", "file.json"))
    assert run_job(_args(), [], job) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "file.json" in err and len(err.splitlines()) == 1


def test_valid_py_with_semipose_traceback(tmp_path, monkeypatch, capsys):
    """The real entry point: a missing config file, first as one line, then with its traceback."""
    valid_cli = load_script("valid")
    missing = str(tmp_path / "nope.yaml")
    assert valid_cli.main(["--cfg", missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: config file not found: {missing!r}") and "Traceback" not in err
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    assert valid_cli.main(["--cfg", missing]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "MissingFileError" in err and "_read_yaml" in err
    assert err.splitlines()[-1].startswith(f"error: config file not found: {missing!r}")


def test_export_falls_back_to_random_crops_only_for_user_errors(monkeypatch):
    """The ONNX check uses random crops when the validation set cannot be built (missing data);
    a bug while building it is not hidden."""
    from semipose.config import load_cfg
    from semipose.data import build
    from semipose.engine.export import check_batches
    cfg = load_cfg(SUPERVISED, TINY)
    said = []

    def missing(cfg):
        raise errors.MissingFileError("COCO annotation file 'x.json' not found")
    monkeypatch.setattr(build, "build_val_dataset", missing)
    assert list(check_batches(cfg, 2, said.append)) == ["random"]
    assert said and "x.json" in said[0]

    def buggy(cfg):
        return json.loads("{")["images"]
    monkeypatch.setattr(build, "build_val_dataset", buggy)
    with pytest.raises(ValueError) as err:
        check_batches(cfg, 2, said.append)
    assert not isinstance(err.value, errors.UserError)

"""Bad command lines, configs and checkpoints: one line naming the field or file, no traceback."""

from __future__ import annotations

import pytest
import torch
from robust_helpers import error_line

from dcsm_lightning.app.error_report import EXIT_USAGE, EXIT_USER_ERROR, run_command
from dcsm_lightning.errors import UserError


def test_misspelt_config_key_is_one_line(run, config, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epochz: 3\n")
    code, err = run("fit", "--config", str(config), "--config", str(bad))
    assert code == EXIT_USAGE
    assert "max_epochz" in error_line(err)
    assert "usage:" not in err


def test_misspelt_model_option_names_the_option(run, config):
    code, err = run("validate", "--config", str(config), "--model.init_args.candidatez=labels")
    assert code == EXIT_USAGE
    assert error_line(err) == "model: Option 'candidatez' is not accepted"


def test_missing_config_file_names_it(run, tmp_path):
    code, err = run("fit", "--config", str(tmp_path / "nope.yaml"))
    assert code == EXIT_USAGE
    assert "nope.yaml" in error_line(err)


def test_unknown_subcommand(run):
    code, err = run("trian")
    assert code == EXIT_USAGE
    assert "'trian'" in error_line(err)


def test_unknown_saliency_class(run, config):
    code, err = run("validate", "--config", str(config), "--model.segmentation.saliency=nope.Maps")
    assert code == EXIT_USAGE
    assert "No module named 'nope'" in error_line(err)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--uncertain_threshold=abc"], "uncertain_threshold"),
        (["--uncertain_threshold=2"], "uncertain_threshold must lie in [0, 1]"),
        (["--method=dcsm"], "predict writes nothing without --output_dir DIR"),
    ],
)
def test_bad_writer_options(run, config, args, expected):
    output = [] if args[0].startswith("--method") else ["--output_dir=out"]
    code, err = run("predict", "--config", str(config), *output, *args)
    # a value of the wrong type is a usage (parse) error, as for every option
    assert code == (EXIT_USAGE if "abc" in args[0] else EXIT_USER_ERROR)
    assert expected in error_line(err)


def test_predict_without_output_dir_stops_before_the_work(run, config):
    code, err = run("predict", "--config", str(config))
    assert code == EXIT_USER_ERROR
    assert error_line(err) == "predict writes nothing without --output_dir DIR or --ckpt_path CKPT"


def test_pseudo_labels_needs_an_output_dir(run, config):
    code, err = run("pseudo-labels", "--config", str(config))
    assert code == EXIT_USER_ERROR  # with --ckpt_path the checkpoint's run folder is the default
    assert error_line(err) == (
        "pseudo-labels writes nothing without --output_dir DIR or --ckpt_path CKPT"
    )


def test_missing_checkpoint_names_the_path(run, config, tmp_path):
    code, err = run("validate", "--config", str(config), f"--ckpt_path={tmp_path}/gone.ckpt")
    assert code == EXIT_USER_ERROR
    assert error_line(err) == f"checkpoint {tmp_path}/gone.ckpt does not exist"


def test_checkpoint_that_is_a_folder(run, config, tmp_path):
    code, err = run("validate", "--config", str(config), f"--ckpt_path={tmp_path}")
    assert code == EXIT_USER_ERROR
    assert error_line(err) == f"checkpoint {tmp_path} is not a file"


def test_text_file_as_checkpoint_is_not_unpickled(run, config, tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello, this is not a checkpoint\n")
    code, err = run("predict", "--config", str(config), f"--ckpt_path={text}")
    assert code == EXIT_USER_ERROR
    assert str(text) in error_line(err)
    assert "weights_only" not in err


def test_truncated_checkpoint(run, config, checkpoint, tmp_path):
    half = tmp_path / "half.ckpt"
    data = checkpoint.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    code, err = run("validate", "--config", str(config), f"--ckpt_path={half}")
    assert code == EXIT_USER_ERROR
    assert error_line(err).startswith(f"cannot read checkpoint {half}: corrupt, truncated")


def test_weights_file_given_as_checkpoint(run, config, checkpoint, tmp_path):
    weights = tmp_path / "weights.pth"
    torch.save(torch.load(checkpoint, weights_only=True)["state_dict"], weights)
    code, err = run("validate", "--config", str(config), f"--ckpt_path={weights}")
    assert code == EXIT_USER_ERROR
    assert "is not a Lightning checkpoint" in error_line(err)


def test_checkpoint_with_unsafe_objects_is_refused(run, config, checkpoint, tmp_path):
    unsafe = tmp_path / "unsafe.ckpt"
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["extra"] = UserError("an arbitrary Python object")
    torch.save(ckpt, unsafe)
    code, err = run("validate", "--config", str(config), f"--ckpt_path={unsafe}")
    assert code == EXIT_USER_ERROR
    assert "only unpickling could restore" in error_line(err)
    assert "weights_only=False" not in err


def test_debug_flag_and_variable_show_the_traceback(config, tmp_path, monkeypatch):
    from dcsm_lightning.app.cli import main

    args = ["validate", "--config", str(config), f"--ckpt_path={tmp_path}/gone.ckpt"]
    with pytest.raises(UserError, match="does not exist"):
        run_command(main, [*args, "--debug"])
    monkeypatch.setenv("DCSM_DEBUG", "1")
    with pytest.raises(UserError, match="does not exist"):
        run_command(main, args)


def test_bugs_keep_their_traceback():
    def buggy(args):
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        run_command(buggy, [])


def test_missing_pretrained_weights_say_how_to_supply_them(run, config, tmp_path):
    code, err = run(
        "fit", "--config", str(config), f"--model.init_args.pretrained={tmp_path}/w.pth"
    )
    assert code == EXIT_USER_ERROR
    assert error_line(err) == f"pretrained weights file {tmp_path}/w.pth does not exist."
    assert "hint: download https://download.pytorch.org/models/vgg16-397923af.pth" in err

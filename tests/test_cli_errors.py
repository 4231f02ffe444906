"""How ``robust-mnist`` ends: one line for a user's mistake, a traceback for a bug, quiet for `| head`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from robust_mnist import cli
from robust_mnist.commands import perturbations as listing
from robust_mnist.errors import InvalidArgumentError, RunDirError


@pytest.fixture
def failing(monkeypatch):
    """Make ``robust-mnist perturbations`` raise the given exception."""

    def install(error: BaseException):
        def run(args):
            raise error

        monkeypatch.setattr(listing, "run", run)

    return install


def test_a_user_error_is_one_line_and_exit_1(failing, capsys):
    failing(RunDirError("runs/x: in use by another study (pid 12)"))
    assert cli.main(["perturbations"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "robust-mnist: error: runs/x: in use by another study (pid 12)\n"


def test_a_multi_line_message_is_still_one_line(failing, capsys):
    failing(InvalidArgumentError("bad value\n  details"))
    assert cli.main(["perturbations"]) == 1
    assert capsys.readouterr().err == "robust-mnist: error: bad value details\n"


def test_an_os_error_on_a_users_file_names_the_file(failing, capsys):
    failing(PermissionError(13, "Permission denied", "runs/x/run.json"))
    assert cli.main(["perturbations"]) == 1
    assert capsys.readouterr().err == "robust-mnist: error: runs/x/run.json: Permission denied\n"


@pytest.mark.parametrize(
    "bug", [ValueError("a bug"), TypeError("a bug"), KeyError("a bug"), OSError("no file named")]
)
def test_anything_else_is_a_bug_and_keeps_its_traceback(failing, bug):
    failing(bug)
    with pytest.raises(type(bug)):
        cli.main(["perturbations"])


def test_verbose_shows_the_traceback_of_user_errors_too(failing):
    failing(InvalidArgumentError("bad value"))
    with pytest.raises(InvalidArgumentError):
        cli.main(["-v", "perturbations"])


def test_interrupt_is_exit_130_with_one_line(failing, capsys):
    failing(KeyboardInterrupt())
    assert cli.main(["perturbations"]) == 130
    assert capsys.readouterr().err == "robust-mnist: interrupted\n"


def test_usage_errors_are_exit_2():
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["perturb"])
    assert exit_info.value.code == 2


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """`robust-mnist ... | head -1`: no "Broken pipe" message, no traceback, exit 1 (as Python)."""
    code = (
        "import sys\n"
        "from robust_mnist import cli\n"
        "from robust_mnist.commands import perturbations\n"
        "def run(args):\n"
        "    for number in range(200_000):\n"
        "        print('line', number)\n"
        "    return 0\n"
        "perturbations.run = run\n"
        "sys.exit(cli.main(['perturbations']))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "line 0\n"
    process.stdout.close()  # what `head -1` does after its first line
    stderr = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 1
    assert stderr == ""

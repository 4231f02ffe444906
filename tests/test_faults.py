"""Faults survived: a killed client, an interrupted cell write, a model save that dies midway.

Already covered in tests/test_runner.py (not repeated here):
- ``test_resume_after_sigkill_matches_an_uninterrupted_run``: the serial runner's process
  killed with SIGKILL, then resume (library level);
- ``test_a_damaged_cell_file_is_computed_again``: a truncated cell file and a stray ``.tmp``
  file are not trusted by resume;
- ``test_second_run_into_a_locked_directory_refuses``.
A Dask worker killed mid-study is in tests/test_executors.py.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from robust_mnist import rundir
from robust_mnist.rundir import load_results
from robust_mnist.runner.cells import Progress
from robust_mnist.runner.run import run_study
from robust_mnist.study import parse_study
from study_fakes import fake_loader, template_classifier

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

STUDY = """
name = "faults"
seed = 5
[[models]]
arch = "article"
seed = 0
[data]
source = "mnist-test"
n = 40
[[perturbations]]
family = "rotate"
magnitudes = [-20, -10, 10, 20]
[[perturbations]]
family = "gaussian_noise"
magnitudes = [0.2, 0.4]
draws = 2
"""
N_CELLS = 1 + 4 + 4


class SlowTemplate:
    """The template model, 0.4 s per call (picklable, for spawned workers)."""

    def predict_proba(self, images):
        time.sleep(0.4)
        return template_classifier().predict_proba(images)


CLIENT = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]
from robust_mnist import cli
from robust_mnist.runner import run
from study_fakes import fake_loader
from test_faults import SlowTemplate

run.load_model = fake_loader({{"article-seed0": SlowTemplate()}})
sys.exit(cli.main(sys.argv[1:]))
"""


def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(STUDY)
    return path


def reference_table(tmp_path: Path) -> pd.DataFrame:
    outcome = run_study(parse_study(__import__("tomllib").loads(STUDY)), tmp_path / "reference",
                        model_loader=fake_loader())
    return pd.read_parquet(outcome.run_dir / "results.parquet")


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_client_killed_mid_study_with_worker_processes_then_resume(tmp_path):
    """SIGKILL the `robust-mnist study --executor process` client; its workers go away and
    `--resume` finishes with the table of an uninterrupted run."""
    reference = reference_table(tmp_path)
    study, run_dir = study_file(tmp_path), tmp_path / "killed"
    argv = ["study", str(study), "--out", str(run_dir), "--quiet", "--executor", "process", "--workers", "2"]
    script = CLIENT.format(tests=str(HERE), root=str(ROOT))
    process = subprocess.Popen([sys.executable, "-c", script, *argv], stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            if len(list((run_dir / "cells").glob("*.parquet"))) >= 3:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode()
        workers = children(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    saved = len(list((run_dir / "cells").glob("*.parquet")))
    assert 3 <= saved < N_CELLS
    # Orphaned spawned workers notice their parent is gone and exit.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)]

    result = subprocess.run([sys.executable, "-c", script, *argv, "--resume"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{N_CELLS - saved} cells computed, {saved} reused" in result.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "results.parquet"), reference, check_exact=True)


def test_cell_write_interrupted_midway_leaves_nothing_resume_would_trust(tmp_path, monkeypatch):
    """The 3rd cell's parquet write dies after writing some bytes: no file under the cell's
    name appears, the earlier cells stay, and resume recomputes exactly the missing ones."""
    reference = reference_table(tmp_path)
    written = []
    real_write = rundir.pq.write_table

    def dies_midway(table, where, *args, **kwargs):
        if len(written) == 2:
            where.write(b"PAR1 half a parquet file")
            raise KeyboardInterrupt  # as if Ctrl-C arrived in the middle of the write
        written.append(table)
        return real_write(table, where, *args, **kwargs)

    monkeypatch.setattr(rundir.pq, "write_table", dies_midway)
    spec = parse_study(__import__("tomllib").loads(STUDY))
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "run", model_loader=fake_loader())
    monkeypatch.setattr(rundir.pq, "write_table", real_write)
    cells = sorted(path.name for path in (tmp_path / "run" / "cells").iterdir())
    assert len(cells) == 2 and not [name for name in cells if name.startswith(".")]
    assert len(load_results(tmp_path / "run")) == 2 * 40  # only the complete cells are read
    outcome = run_study(spec, tmp_path / "run", model_loader=fake_loader(), resume=True)
    assert (outcome.cells_computed, outcome.cells_reused) == (N_CELLS - 2, 2)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run" / "results.parquet"), reference,
                                  check_exact=True)


def test_complete_cell_file_from_another_run_is_not_trusted(tmp_path):
    """A valid cell file of the same name but another study's run is recomputed on resume."""
    reference = reference_table(tmp_path)
    other = parse_study(__import__("tomllib").loads(STUDY.replace("seed = 5", "seed = 6")))
    run_study(other, tmp_path / "other", model_loader=fake_loader())
    spec = parse_study(__import__("tomllib").loads(STUDY))

    class StopAfterClean(Progress):
        def cell_finished(self, cell):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "run", model_loader=fake_loader(), progress=StopAfterClean())
    foreign = "rotate__10.0__d0.parquet"
    shutil.copy(tmp_path / "other" / "cells" / foreign, tmp_path / "run" / "cells" / foreign)
    outcome = run_study(spec, tmp_path / "run", model_loader=fake_loader(), resume=True)
    assert outcome.cells_computed == N_CELLS - 1
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "run" / "results.parquet"), reference,
                                  check_exact=True)


SAVE_DIES = """
import os, signal, sys
sys.path[:0] = [{root!r}]
import keras
from robust_mnist import models
from robust_mnist.data import Mnist, arrays_checksum, load_mnist

def dies_while_saving(self, path, *args, **kwargs):
    with open(path, "wb") as handle:
        handle.write(b"PK half a keras archive")
        handle.flush()
    {die}

keras.Model.save = dies_while_saving
mnist = load_mnist()
arrays = dict(x_train=mnist.x_train[:300], y_train=mnist.y_train[:300],
              x_test=mnist.x_test[:100], y_test=mnist.y_test[:100])
tiny = Mnist(**arrays, checksum=arrays_checksum(arrays), path="tiny")
models.train("article", 0, {out!r}, data=tiny, epochs=1, verbose=0)
"""


@pytest.mark.tf
@pytest.mark.parametrize("how", ["sigkill", "error"])
def test_model_save_dying_midway_leaves_the_old_model_in_place(tmp_path, how):
    """The process is killed (SIGKILL), or the save fails (disk full), while Keras writes the
    new model: the old file and its training record stay as they were, and a half-written
    temporary file is never what the model path or the trust check sees."""
    from robust_mnist import models

    out = tmp_path / "article-seed0.keras"
    out.write_bytes(b"the old, good model")
    record = {"model_sha256": models.file_checksum(out), "val_accuracy": 0.987}
    models.record_path(out).write_text(__import__("json").dumps(record))
    old_record = models.record_path(out).read_text()
    die = "os.kill(os.getpid(), signal.SIGKILL)" if how == "sigkill" else "raise OSError(28, 'No space left on device')"
    script = SAVE_DIES.format(root=str(ROOT), die=die, out=str(out))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    if how == "sigkill":
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    else:
        assert result.returncode == 1 and "No space left on device" in result.stderr
    assert out.read_bytes() == b"the old, good model"
    assert models.record_path(out).read_text() == old_record
    assert models.trained_here(out)
    leftovers = [path for path in tmp_path.iterdir() if path.name not in (out.name, models.record_path(out).name)]
    if how == "error":
        assert leftovers == []  # the failed save cleaned up after itself
    for path in leftovers:  # a SIGKILLed process cannot clean up; its temp file is inert
        assert path.name.startswith(".") and path.name.endswith(".tmp.keras")
        assert not models.trained_here(path)

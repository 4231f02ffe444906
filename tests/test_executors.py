"""Executors: serial, a spawned process pool and a Dask LocalCluster give the same table.

The studies use numpy models (TemplateClassifier) so no test here imports TensorFlow; the
models travel to the workers as picklable objects (a model with a file is reloaded from it).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robust_mnist.runner.executors import DaskExecutor, ProcessExecutor, SerialExecutor, make_executor
from robust_mnist.runner.inputs import LoadedModel
from robust_mnist.runner.run import run_study
from robust_mnist.study import parse_study
from study_fakes import register_fakes, template_classifier

KEY = ["model", "family", "magnitude", "image", "draw"]


def study(**changes) -> dict:
    document = {
        "name": "executors",
        "seed": 11,
        "models": [{"arch": "article", "seed": 0}, {"arch": "article", "seed": 1}],
        # Enough digits that BLAS runs multi-threaded: thread caps in workers would show.
        "data": {"source": "mnist-test", "n": 600},
        "perturbations": [
            {"family": "fake_shift", "magnitudes": [-2, 1, 3]},
            {"family": "fake_noise", "magnitudes": [0.3, 0.6], "draws": 2, "n": 30},
            # Real families too: their random streams must not depend on the process.
            {"family": "gaussian_noise", "magnitudes": [0.2], "draws": 2},
            {"family": "rotate", "magnitudes": [-15, 30]},
        ],
    }
    document.update(changes)
    return document


class Sharper:
    """A second, different numpy model (picklable: defined at module level)."""

    def __init__(self, inner, scale: float) -> None:
        self.inner, self.scale = inner, scale

    def predict_proba(self, images):
        logits = np.log(np.clip(self.inner.predict_proba(images), 1e-30, None)) * self.scale
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


_CALLS = [0]


class KillsItsWorker:
    """Kills the worker process that runs it (SIGKILL) on its 2nd call there, once per marker.

    The client process (which computes the clean cell) is never killed. O_EXCL on the marker
    makes exactly one worker die, whichever gets there first.
    """

    def __init__(self, inner, marker: str, client_pid: int) -> None:
        self.inner, self.marker, self.client_pid = inner, marker, client_pid

    def predict_proba(self, images):
        if os.getpid() != self.client_pid:
            _CALLS[0] += 1
            if _CALLS[0] >= 2:
                try:
                    os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.predict_proba(images)


def loader(classifiers: dict):
    def load(model, engine="keras", retrain=None):  # robust_mnist.runner.inputs.load_model's signature
        return LoadedModel(classifiers[model.name], {
            "arch": model.arch, "seed": model.seed, "path": None,
            "checksum": f"fake-{model.name}", "training": None})

    return load


@pytest.fixture
def models():
    base = template_classifier()
    return {"article-seed0": base, "article-seed1": Sharper(base, 0.5)}


@pytest.fixture
def fakes(monkeypatch):
    register_fakes(monkeypatch)


def run(tmp_path, name, models, executor=None, document=None, **options):
    outcome = run_study(parse_study(document or study()), tmp_path / name,
                        model_loader=loader(models), executor=executor, **options)
    return outcome, pd.read_parquet(outcome.run_dir / "results.parquet")


@pytest.fixture
def reference(fakes, tmp_path, models):
    return run(tmp_path, "serial", models)[1]


def check_table(table: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert not table.duplicated(KEY).any()
    pd.testing.assert_frame_equal(table, reference, check_exact=True)


def test_reference_run_has_every_row_once(reference):
    # 600 clean + fake_shift 3x600 + fake_noise 2x2x30 + gaussian_noise 2x600 + rotate 2x600, per model
    assert len(reference) == 2 * (600 + 1800 + 120 + 1200 + 1200)
    assert not reference.duplicated(KEY).any()


def test_serial_executor_object_is_the_default_loop(reference, tmp_path, models):
    outcome, table = run(tmp_path, "serial-explicit", models, SerialExecutor())
    check_table(table, reference)


def test_process_pool_of_two_spawned_workers_gives_the_serial_table(reference, tmp_path, models):
    outcome, table = run(tmp_path, "process", models, ProcessExecutor(workers=2))
    assert outcome.cells_computed == 1 + 3 + 4 + 2 + 2
    check_table(table, reference)
    import json
    assert json.loads((outcome.run_dir / "run.json").read_text())["executor"] == {"name": "process", "workers": 2}


def test_process_pool_resume_computes_only_missing_cells(reference, tmp_path, models):
    from test_runner import StopAfter

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "resumed", models, progress=StopAfter(4))
    outcome, table = run(tmp_path, "resumed", models, ProcessExecutor(workers=2), resume=True)
    assert (outcome.cells_computed, outcome.cells_reused) == (8, 4)
    check_table(table, reference)


dask_required = pytest.mark.skipif(
    __import__("importlib").util.find_spec("distributed") is None,
    reason="needs the dask extra: pip install 'dask[distributed]'",
)


@dask_required
def test_dask_local_cluster_of_two_processes_gives_the_serial_table(reference, tmp_path, models):
    environ = dict(os.environ)
    outcome, table = run(tmp_path, "dask", models, DaskExecutor(workers=2))
    assert outcome.cells_computed == 12
    check_table(table, reference)
    assert dict(os.environ) == environ  # the nanny's worker settings did not leak into ours


@dask_required
def test_dask_worker_killed_mid_study_loses_and_duplicates_nothing(reference, tmp_path, models):
    marker = tmp_path / "worker-killed"
    killer = dict(models, **{"article-seed1": KillsItsWorker(models["article-seed1"], str(marker), os.getpid())})
    outcome, table = run(tmp_path, "dask-killed", killer, DaskExecutor(workers=2))
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert outcome.cells_computed == 12
    check_table(table, reference)
    assert len(list((outcome.run_dir / "cells").glob("*.parquet"))) == 12


def test_make_executor_validates_its_arguments():
    assert make_executor().name == "serial"
    assert make_executor("process", workers=3).workers == 3
    with pytest.raises(ValueError, match="unknown executor 'threads'.*serial, process, dask"):
        make_executor("threads")
    with pytest.raises(ValueError, match="workers must be a positive integer; got 0"):
        make_executor("process", workers=0)
    with pytest.raises(ValueError, match="--scheduler.*needs --executor dask"):
        make_executor("process", scheduler="tcp://127.0.0.1:8786")


def test_worker_refuses_a_model_file_that_differs_from_the_clients(tmp_path):
    from robust_mnist.runner.executors import ModelRef, _classifier

    path = tmp_path / "m.keras"
    path.write_bytes(b"not the client's model")
    with pytest.raises(ValueError, match="m.keras: model file on worker .* differs from the client's"):
        _classifier(ModelRef("m", str(path), "0" * 64))


# ------------------------------------------------------------------ through the command line


@pytest.fixture
def cli_study(fakes, tmp_path, monkeypatch, models):
    """A study file run by `robust-mnist study` with the numpy models (in tmp_path)."""
    import json as _json

    from robust_mnist.runner import run as runner

    monkeypatch.chdir(tmp_path)  # `study` writes reports/<name>.html
    monkeypatch.setattr(runner, "load_model", loader(models))

    def write(**changes) -> Path:
        document = study(**changes)
        lines = [f"{key} = {_json.dumps(value)}" for key, value in document.items()
                 if not isinstance(value, (dict, list))]
        for model in document["models"]:
            lines += ["[[models]]", *(f"{k} = {_json.dumps(v)}" for k, v in model.items())]
        lines += ["[data]", *(f"{k} = {_json.dumps(v)}" for k, v in document["data"].items())]
        for spec in document["perturbations"]:
            lines += ["[[perturbations]]", *(f"{k} = {_json.dumps(v)}" for k, v in spec.items())]
        path = tmp_path / f"{document['name']}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


SMALL = {"data": {"source": "mnist-test", "n": 60}}


@pytest.fixture
def small_reference(fakes, tmp_path, models):
    return run(tmp_path, "serial-small", models, document=study(**SMALL))[1]


def test_cli_executor_flags_and_study_file_key_give_the_serial_table(cli_study, small_reference, tmp_path, capsys):
    from robust_mnist import cli

    reference = small_reference
    path = cli_study(**SMALL)
    assert cli.main(["study", str(path), "--out", str(tmp_path / "cli-process"), "--quiet",
                     "--executor", "process", "--workers", "2"]) == 0
    check_table(pd.read_parquet(tmp_path / "cli-process" / "results.parquet"), reference)
    # executor = "process" in the file: same spec hash (how to run is not what to run).
    keyed = cli_study(executor="process", workers=2, **SMALL)
    assert cli.main(["study", str(keyed), "--out", str(tmp_path / "cli-keyed"), "--quiet"]) == 0
    info = __import__("json").loads((tmp_path / "cli-keyed" / "run.json").read_text())
    assert info["executor"] == {"name": "process", "workers": 2}
    check_table(pd.read_parquet(tmp_path / "cli-keyed" / "results.parquet"), reference)
    assert cli.main(["study", str(keyed), "--out", str(tmp_path / "cli-process"), "--quiet"]) == 0
    assert "already complete" in capsys.readouterr().err


@dask_required
def test_cli_scheduler_address_runs_on_an_existing_cluster(cli_study, small_reference, tmp_path):
    import distributed

    from robust_mnist import cli
    from robust_mnist.runner.executors import _local_cluster

    with _local_cluster(distributed, 2) as cluster:
        assert cli.main(["study", str(cli_study(**SMALL)), "--out", str(tmp_path / "remote"), "--quiet",
                         "--scheduler", cluster.scheduler_address]) == 0
    check_table(pd.read_parquet(tmp_path / "remote" / "results.parquet"), small_reference)
    info = __import__("json").loads((tmp_path / "remote" / "run.json").read_text())
    assert info["executor"]["name"] == "dask" and info["executor"]["scheduler"] == cluster.scheduler_address


def test_study_file_executor_key_is_validated(fakes):
    from robust_mnist import study as study_module
    from robust_mnist.runner import executors

    assert study_module._EXECUTORS == executors.EXECUTORS
    with pytest.raises(ValueError, match=r"executor: unknown executor 'spark'; allowed: serial, process, dask"):
        parse_study(study(executor="spark"))
    with pytest.raises(ValueError, match="workers: must be a positive integer; got 0"):
        parse_study(study(workers=0))
    assert parse_study(study(executor="dask")).spec_hash() == parse_study(study()).spec_hash()

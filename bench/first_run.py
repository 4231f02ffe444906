"""Time the README's first command, stage by stage, in a fresh clone with a fresh virtual environment.

The first command is ``python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/robust-mnist
study studies/article.toml``: set up, run the article study (the bundled CNN on ONNX Runtime),
print the summary and write the report. This script clones the repository into a scratch folder
and times, each in its own process:

- ``install``: the virtual environment and ``pip install -e .`` (pip's cache decides most of it);
- ``study command``: ``robust-mnist study studies/article.toml``, all of it (run, summary and
  report, as a user waits for them), with its peak RSS; and, from its own last line, the run;
- ``summary`` and ``report``: ``robust-mnist summary runs/article`` and ``robust-mnist report
  runs/article`` again, alone (the same work the study command ends with), with their peak RSS;
- ``bare engine``: ONNX Runtime predicting the study's 1,142,400 evaluations and nothing else
  (the bundled article CNN as the study loads it, on the MNIST test digits in the study's blocks
  of ``MODEL_BATCH``), measured before and after the study command, the faster kept; and the
  ratio of the study command to it (issue 15's target: at most 2.5).

The clone gets an empty ``ROBUST_MNIST_HOME``, so nothing cached by earlier runs is reused
(nothing is trained either: the models ship with the package).

Usage::

    python bench/first_run.py                      # clone this repository's HEAD
    python bench/first_run.py --repo /path/to/clone --keep /tmp/first-run
    python bench/first_run.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Predictions of the article study (studies/article.toml): cells x digits x models.
EVALUATIONS = 1_142_400

BARE = """
import sys, time
import numpy as np
from robust_mnist.data import load_mnist, to_float
from robust_mnist.runner.cells import MODEL_BATCH, predict
from robust_mnist.runner.inputs import load_model
from robust_mnist.study import load_study

spec = load_study("studies/article.toml")
classifier = load_model(spec.models[0]).classifier
images = to_float(load_mnist().x_test)
total = int(sys.argv[1])
predict(classifier, images[:MODEL_BATCH], "warm-up")
started = time.perf_counter()
done = 0
while done < total:
    for start in range(0, len(images), MODEL_BATCH):
        block = images[start : start + min(MODEL_BATCH, total - done)]
        predict(classifier, block, "bare")
        done += len(block)
        if done >= total:
            break
print(time.perf_counter() - started)
"""


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str, str]:
    """Run ``command``; return its wall seconds, its peak RSS (MB), stdout and stderr. Exits on failure."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage: its peak RSS
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout, stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(ROOT), help="repository to clone (default: this one)")
    parser.add_argument("--keep", type=Path, help="clone here and keep it (default: a temporary folder)")
    parser.add_argument("--python", default="python3", help="the Python that makes the virtual environment")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)

    scratch = None
    if args.keep is None:
        scratch = tempfile.TemporaryDirectory(prefix="robust-mnist-first-run-")
        where = Path(scratch.name)
    else:
        where = args.keep
        where.mkdir(parents=True, exist_ok=True)
    clone = where / "clone"
    subprocess.run(["git", "clone", "--quiet", args.repo, str(clone)], check=True)
    env = {**os.environ, "ROBUST_MNIST_HOME": str(where / "home")}
    env.pop("VIRTUAL_ENV", None)
    robust_mnist = str(clone / ".venv" / "bin" / "robust-mnist")
    python = str(clone / ".venv" / "bin" / "python")

    figures: dict[str, float | int | str] = {}
    started = time.perf_counter()
    subprocess.run([args.python, "-m", "venv", ".venv"], cwd=clone, check=True)
    timed([python, "-m", "pip", "install", "--quiet", "-e", "."], clone, env)
    figures["install_s"] = round(time.perf_counter() - started, 1)

    bare = [float(timed([python, "-c", BARE, str(EVALUATIONS)], clone, env)[2])]
    seconds, peak, out, err = timed([robust_mnist, "study", "studies/article.toml", "--quiet"], clone, env)
    figures["study_command_s"] = round(seconds, 1)
    figures["study_command_peak_rss_mb"] = round(peak)
    run = re.search(r"digit evaluations\) in ([0-9.]+) s", err)
    figures["of_which_run_s"] = float(run.group(1)) if run else "?"
    bare.append(float(timed([python, "-c", BARE, str(EVALUATIONS)], clone, env)[2]))
    figures["bare_engine_s"] = round(min(bare), 1)
    figures["bare_engine_per_s"] = round(EVALUATIONS / min(bare))
    figures["ratio_study_to_bare"] = round(seconds / min(bare), 2)
    for stage in ("summary", "report"):
        seconds, peak, _, _ = timed([robust_mnist, stage, "runs/article"], clone, env)
        figures[f"{stage}_alone_s"] = round(seconds, 1)
        figures[f"{stage}_alone_peak_rss_mb"] = round(peak)
    figures["first_command_s"] = round(figures["install_s"] + figures["study_command_s"], 1)

    if scratch is not None:
        scratch.cleanup()
    if args.json:
        print(json.dumps(figures))
    else:
        width = max(map(len, figures))
        for key, value in figures.items():
            print(f"{key:<{width}} {value:>10,}" if isinstance(value, (int, float)) else f"{key:<{width}} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

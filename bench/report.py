"""Benchmark a run's summary and study report: wall-clock seconds and peak memory, cold.

Each measurement runs in a fresh Python process, imports included, as the ``robust-mnist
summary`` and ``robust-mnist report`` commands pay them:

- ``summary``: :func:`robust_mnist.summary.write_summary` of the run directory (the terminal
  table, written to /dev/null);
- ``report``: :func:`robust_mnist.html.study_report.write_report` of the run directory (to a
  temporary HTML file), with the figure workers ``robust-mnist report`` uses;
- ``summary+report``: both on one run read once (:func:`robust_mnist.report_data.read_run`),
  the way ``robust-mnist study`` can write them after the run.

Seconds are the child process's wall clock from start to exit; peak RSS is its maximum
resident set size (``wait4``'s rusage: the largest of the process and of the worker processes
that draw a large report's figures, about 170 MB each, not their sum). These machines vary
from run to run: use ``--repeat`` and compare figures measured side by side.

Usage::

    python bench/report.py RUN_DIR                    # e.g. the article study's run
    python bench/report.py RUN_DIR --repeat 3         # best and median of 3 cold runs each
    python bench/report.py RUN_DIR --only report --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: What each measurement runs in its fresh process (``run_dir`` and ``out`` are given).
TASKS = {
    "summary": (
        "import os\n"
        "from robust_mnist.summary import write_summary\n"
        "with open(os.devnull, 'w') as sink:\n"
        "    write_summary(run_dir, 'table', sink)\n"
    ),
    "report": (
        "from robust_mnist.html.study_report import write_report\n"
        "write_report(run_dir, out, workers=None)\n"
    ),
    "summary+report": (
        "import os\n"
        "from robust_mnist.html.study_report import write_report\n"
        "from robust_mnist.report_data import read_run\n"
        "from robust_mnist.summary import write_summary\n"
        "run = read_run(run_dir)\n"
        "with open(os.devnull, 'w') as sink:\n"
        "    write_summary(run, 'table', sink)\n"
        "write_report(run, out, workers=None)\n"
    ),
}


def measure(task: str, run_dir: Path, out: Path) -> tuple[float, float]:
    """One cold run of ``task``: (wall seconds, peak RSS in MB)."""
    code = f"import sys\nrun_dir, out = sys.argv[1], sys.argv[2]\n{TASKS[task]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, str(run_dir), str(out)], env=env)
    _, status, usage = os.wait4(child.pid, 0)  # wait4, not wait: the child's own rusage
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen
    if child.returncode != 0:
        raise SystemExit(f"{task} failed with exit status {child.returncode}")
    return seconds, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory written by `robust-mnist study`")
    parser.add_argument("--repeat", type=int, default=1, help="cold runs of each measurement (default 1)")
    parser.add_argument("--only", choices=tuple(TASKS), action="append",
                        help="measure only this (repeatable; default all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not (args.run_dir / "run.json").is_file():
        parser.error(f"{args.run_dir} is not a run directory (no run.json)")
    tasks = args.only or list(TASKS)
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "report.html"
        for task in tasks:
            runs = [measure(task, args.run_dir, out) for _ in range(max(1, args.repeat))]
            seconds = [s for s, _ in runs]
            figures[task] = {
                "seconds_best": round(min(seconds), 2),
                "seconds_median": round(statistics.median(seconds), 2),
                "peak_rss_mb_max": round(max(rss for _, rss in runs)),
                "runs": len(runs),
            }
            if not args.json:
                f = figures[task]
                print(f"{task:<15} {f['seconds_best']:6.2f} s best, {f['seconds_median']:6.2f} s median "
                      f"of {f['runs']}; peak RSS {f['peak_rss_mb_max']:,} MB", flush=True)
    if args.json:
        print(json.dumps({"run_dir": str(args.run_dir), **figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``robust-mnist study STUDY.toml``: run a perturbation study into a run directory.

The study file is validated first (any mistake is a one-line error before any work), then
:func:`robust_mnist.runner.run.run_study_file` computes the missing cells with a progress bar
on stderr, the summary table is printed to stdout and the report written.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from pathlib import Path

from ..runner import DEFAULT_CHUNK_SIZE
from .arguments import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="run a perturbation study (a TOML file in studies/)",
        description="Run every model on every perturbation, magnitude and draw of a study "
        "file, writing a run directory (results table, run.json, gallery images); results "
        "are saved cell by cell, so an interrupted run resumes where it stopped.",
    )
    parser.add_argument("study", type=Path, metavar="STUDY.toml", help="the study file")
    parser.add_argument("--out", type=Path, metavar="RUN_DIR", help="run directory (default: runs/<study name>)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="finish an interrupted run: compute only the missing cells")
    again.add_argument("--force", action="store_true", help="discard the run in RUN_DIR and start over")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--executor", choices=("serial", "process", "dask"), default=None,
        help="where cells are computed: this process (serial, the default and fastest on few "
        "cores), a pool of local processes, or a Dask cluster (needs robust-mnist[dask]); "
        "the results are the same",
    )
    parser.add_argument(
        "--engine", choices=("keras", "onnx"), default=None,
        help="what runs Keras models: ONNX Runtime on the model's export (onnx, the default: "
        "the bundled models ship theirs; another model's is made once beside it and checked "
        "equal to 1e-5), or TensorFlow (keras); .onnx model files always run on ONNX Runtime",
    )
    parser.add_argument(
        "--retrain", action="store_true",
        help="train the study's architectures (arch = ...) again before running, into the model "
        "cache ($ROBUST_MNIST_HOME/models), which is then used instead of the models bundled "
        "with robust-mnist; model files (path = ...) are not affected",
    )
    parser.add_argument("--workers", type=positive_int, metavar="N", help="processes for --executor process, or a local Dask cluster")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://HOST:8786 (implies --executor dask)")
    parser.add_argument(
        "--trust-model", action="store_true",
        help="load Keras model files (path = ... in the study) that this tool did not train; "
        "Keras files can run code, so only for files whose source you trust (ONNX files need "
        "no trust)",
    )
    parser.add_argument(
        "--chunk-size", type=positive_int, default=DEFAULT_CHUNK_SIZE, metavar="N",
        help=f"images perturbed per call: lower it to save memory; results do not depend on it "
        f"(default {DEFAULT_CHUNK_SIZE:,})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..html.study_report import write_report
    from ..report_data import read_run
    from ..runner.run import StudyInterrupted, run_study_file
    from ..summary import write_summary

    progress = None if args.quiet else RichProgress()
    try:
        with progress if progress is not None else contextlib.nullcontext():
            outcome = run_study_file(
                args.study, args.out, trust_model=args.trust_model, executor=args.executor,
                workers=args.workers, scheduler=args.scheduler, resume=args.resume, force=args.force,
                chunk_size=args.chunk_size, progress=progress, command=_command(args, args.out),
                retrain=args.retrain, **({"engine": args.engine} if args.engine else {}),
            )
    except StudyInterrupted as stop:
        print(f"robust-mnist: {stop}\nresume with: {shlex.join(_command(args, args.out, resume=True))}",
              file=sys.stderr)
        return 130
    if outcome.status == "already-complete":
        print(f"{outcome.study}: already complete in {outcome.run_dir} (use --force to recompute)", file=sys.stderr)
    else:
        print(
            f"{outcome.study}: {outcome.cells_computed} cells computed"
            + (f", {outcome.cells_reused} reused" if outcome.cells_reused else "")
            + f" ({outcome.evaluations:,} digit evaluations) in {outcome.seconds:.1f} s -> {outcome.run_dir}",
            file=sys.stderr,
        )
    run = read_run(outcome.run_dir)  # results.parquet read once, for the summary and the report
    write_summary(run, "table", sys.stdout)
    print(f"report: {write_report(run, workers=None)}")
    return 0


class RichProgress:
    """A rich progress bar on stderr: the current cell, digits per second and time left.

    Implements the callbacks of :class:`robust_mnist.runner.cells.Progress`.
    """

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn, Progress as Bar, TaskProgressColumn, TextColumn, TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.bar = Bar(
            TextColumn("{task.description:<22.22}"),
            BarColumn(bar_width=20),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]:>15}"),
            TimeElapsedColumn(),
            TextColumn("elapsed,"),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=self.console,
        )
        self.task = None
        self.started = 0.0
        self.done = 0

    def __enter__(self) -> "RichProgress":
        return self

    def __exit__(self, *exc) -> None:
        # The bar starts with the first cell, so that training a model on first use shows
        # Keras's own progress undisturbed.
        if self.task is not None:
            self.bar.stop()

    def stage(self, text: str) -> None:
        self.console.print(f"[dim]{text}...[/dim]", highlight=False)

    def start(self, total: int, cells: int) -> None:
        self.started, self.done = time.perf_counter(), 0
        self.task = self.bar.add_task("starting", total=total, rate="")
        self.bar.start()

    def cell_started(self, cell, evaluations: int) -> None:
        if cell.label == "clean":
            text = "clean digits"
        else:
            text = f"{cell.label} {cell.magnitude:g}" + (f" draw {cell.draw}" if cell.draw else "")
        self.bar.update(self.task, description=text)

    def advance(self, evaluations: int) -> None:
        self.done += evaluations
        elapsed = time.perf_counter() - self.started
        rate = f"{self.done / elapsed:,.0f} digits/s" if elapsed > 0 else ""
        self.bar.update(self.task, advance=evaluations, rate=rate)

    def cell_finished(self, cell) -> None:
        pass


def _command(args: argparse.Namespace, out: Path | None, resume: bool = False) -> list[str]:
    """The command line (canonical form) that ran, or that resumes, this study."""
    command = ["robust-mnist", "study", str(args.study)]
    if out is not None:
        command += ["--out", str(out)]
    for flag, value in (("--executor", args.executor), ("--workers", args.workers), ("--scheduler", args.scheduler),
                        ("--engine", args.engine)):
        if value is not None:
            command += [flag, str(value)]
    if args.trust_model:
        command.append("--trust-model")
    if resume:  # the models retrained (if --retrain) are in the cache: not again
        return command + ["--resume"]
    if args.retrain:
        command.append("--retrain")
    if args.resume:
        command.append("--resume")
    if args.force:
        command.append("--force")
    if args.quiet:
        command.append("--quiet")
    if args.chunk_size != DEFAULT_CHUNK_SIZE:
        command += ["--chunk-size", str(args.chunk_size)]
    return command

"""The study report: one self-contained HTML page that shows where and how probabilities swing.

:func:`write_report` reads a run directory (never a model or perturbation code), computes the
aggregates with :mod:`robust_mnist.metrics`, draws them with :mod:`robust_mnist.plots` and
renders ``templates/report.html.j2`` into a single file.

The page machinery here is shared with the comparison report: :func:`template_environment`
(jinja2 with autoescaping on), :func:`svg_data_uri` and :func:`png_data_uri` (figures and
digit images as data URIs, deterministic bytes), :class:`Table` (sortable tables whose numeric
columns sort by value), :func:`make_strip` and :class:`Gallery` (digit strips with their
probability bars, drawn pixel-exact) and
:func:`render_page` (inline CSS and script, a Content-Security-Policy that allows no request at
all, atomic write).

Self-containment: every image is a ``data:`` URI, CSS and script are inline, and the CSP meta
tag (``default-src 'none'; img-src data:``) makes the browser refuse anything else, so the page
opens offline from disk and cannot leak a request even if a future template slips.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import numpy as np
import pandas as pd
from markupsafe import Markup

from . import __version__, plots

logger = logging.getLogger(__name__)

#: The article's reported training result, for the reproduction panel.
ARTICLE = {"val_accuracy": 0.984, "val_loss": 0.0537, "stopped_epoch": 30}
#: Width in CSS pixels of the text column (47rem), which strips should not exceed.
COLUMN_PIXELS = 752

# ------------------------------------------------------------------------- page machinery


def template_environment() -> jinja2.Environment:
    """The jinja2 environment of the report templates, escaping every value.

    ``autoescape=True`` rather than ``select_autoescape``: the templates end in ``.html.j2``,
    which extension-based selection would leave unescaped.
    """
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("robust_mnist", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["pct"] = percent
    environment.filters["ci"] = interval
    return environment


def _asset(name: str) -> str:
    return (resources.files("robust_mnist") / "templates" / name).read_text(encoding="utf-8")


def content_security_policy(script: str) -> str:
    """The page's CSP: nothing may load but data: images; only this exact script may run."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def render_page(template: str, context: dict[str, Any], out: str | os.PathLike) -> Path:
    """Render a report template with the shared CSS and script and write it atomically.

    Parameters
    ----------
    template : str
        A template name under ``robust_mnist/templates`` that extends ``page.html.j2``.
    context : dict
        Its variables; strings are escaped by the template.
    out : path-like
        The HTML file to write; its folder is created.

    Returns
    -------
    pathlib.Path
    """
    script = _asset("sortable.js")
    page = template_environment().get_template(template).render(
        **context,
        css=Markup(_asset("report.css")),
        script=Markup(script),
        csp=Markup(content_security_policy(script)),
        generator=f"robust_mnist {__version__}",
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return out


#: Settings that make matplotlib's SVG bytes depend only on the figure.
_SVG_SETTINGS = {"svg.hashsalt": "robust_mnist", "svg.fonttype": "none"}
#: Characters percent-encoded in an SVG data URI: those that end the attribute or start an
#: escape (", &, %), a fragment (#), and newlines, which URL parsing would strip.
_SVG_ESCAPES = str.maketrans({"%": "%25", "#": "%23", '"': "%22", "&": "%26", "\n": "%0A", "\r": "%0D"})


def svg_data_uri(figure: matplotlib.figure.Figure) -> Markup:
    """A figure as an SVG data URI, with deterministic bytes.

    SVG goes in as an ``<img>`` rather than inline: matplotlib's element ids (glyphs, clip
    paths) are only unique within one SVG document, and several inlined figures would collide.
    The SVG is percent-encoded only where it must be (a third smaller than base64), which
    also makes the returned string safe inside a double-quoted HTML attribute.
    """
    buffer = io.BytesIO()
    with matplotlib.rc_context(_SVG_SETTINGS):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue().decode("utf-8").translate(_SVG_ESCAPES)
    return Markup("data:image/svg+xml;charset=utf-8," + text)


def png_data_uri(pixels: np.ndarray, palette: Sequence[int] | None = None) -> str:
    """An image as a PNG data URI.

    Parameters
    ----------
    pixels : (H, W) ndarray of uint8, or (H, W, 3) ndarray of uint8
        Palette indices when ``palette`` is given, grey levels or RGB otherwise.
    palette : sequence of int, optional
        A flat RGB palette (``3 * 256`` values) for ``(H, W)`` index images.
    """
    from PIL import Image

    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if palette is not None:
        image = Image.fromarray(pixels, mode="P") if pixels.ndim == 2 else None
        if image is None:
            raise ValueError(f"palette images must be 2-D; got shape {pixels.shape}")
        image.putpalette(list(palette))
    else:
        image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------- formatting


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def percent(value: Any, digits: int = 1) -> str:
    """``0.1234 -> "12.3%"``; a missing value is an en dash."""
    return f"{100 * float(value):.{digits}f}%" if _finite(value) else "–"


def number(value: Any, digits: int = 2) -> str:
    """A float with ``digits`` decimals (inf as "never", NaN as an en dash)."""
    if value is not None and not isinstance(value, str) and np.isinf(value):
        return "never" if value > 0 else "−∞"
    return f"{float(value):.{digits}f}".replace("-", "−") if _finite(value) else "–"


def _significant(value: float, digits: int = 3) -> str:
    """``value`` with at most ``digits`` significant digits, never in exponent notation."""
    text = np.format_float_positional(float(value), precision=digits, unique=True, fractional=False, trim="-")
    return text.replace("-", "−")


def magnitude_text(value: Any, unit: str = "", short: bool = False) -> str:
    """A magnitude with its unit, as a reader would write it.

    ``30 degrees -> "30°"``, ``2 px -> "2 px"``, ``20 "% size change" -> "+20%"``,
    ``0.05 "fraction of pixels" -> "5% of pixels"``; ``short`` drops spelled-out units (for
    column headers under a title that names the unit).
    """
    if not _finite(value):
        return number(value)
    value = float(value)
    text = _significant(value)
    unit = unit or ""
    if unit in ("degrees", "degree", "deg", "°"):
        return f"{text}°"
    if unit.startswith("%"):
        return ("+" if value > 0 else "") + f"{text}%"
    if unit.startswith("x ") or unit == "x":
        return f"{text}×"
    if unit.startswith("fraction"):
        share = _significant(100 * value) + "%"
        return share if short else f"{share} of {unit.split(' of ', 1)[1]}" if " of " in unit else share
    if short or unit in ("", "t", "intensity sd", "sd"):
        return text
    if unit.startswith("px"):
        return f"{text} px"
    return f"{text} {unit}"


def interval(low: Any, high: Any, as_percent: bool = False, digits: int | None = None) -> str:
    """``"[11.2%, 13.0%]"``, or ``"[0.41, 0.45]"``."""
    if as_percent:
        digits = 1 if digits is None else digits
        return f"[{percent(low, digits)}, {percent(high, digits)}]"
    digits = 2 if digits is None else digits
    return f"[{number(low, digits)}, {number(high, digits)}]"


# -------------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Cell:
    """One table cell: the text shown, and the value it sorts by (numbers sort numerically)."""

    text: str
    sort: float | str | None = None
    note: str = ""  # secondary text (an interval), shown muted after the main text


@dataclass
class Table:
    """A table for the page; sortable by clicking a header when ``sortable``.

    Attributes
    ----------
    columns : list of (title, numeric) pairs
        ``numeric`` columns sort by their cells' ``sort`` value and are right-aligned.
    rows : list of list of Cell
    caption : str
    sortable : bool
    css_class : str
        Extra classes of the ``<table>`` element.
    """

    columns: list[tuple[str, bool]]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    sortable: bool = True
    css_class: str = ""


def estimate_cell(row: Any, metric: str, as_percent: bool = False, digits: int | None = None) -> Cell:
    """A cell showing ``<metric>`` with its interval ``<metric>_low``, ``<metric>_high``."""
    value = row[metric]
    if as_percent:
        text = percent(value, 1 if digits is None else digits)
    else:
        text = number(value, 2 if digits is None else digits)
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    note = interval(low, high, as_percent, digits) if _finite(low) and _finite(high) else ""
    sort = float(value) if _finite(value) or (value is not None and np.isinf(value)) else None
    if sort is not None and np.isinf(sort):
        sort = 1e300 if sort > 0 else -1e300  # JSON-safe and still sorts last
    return Cell(text, sort, note)


def text_cell(value: Any) -> Cell:
    return Cell(str(value), str(value))


def int_cell(value: Any) -> Cell:
    return Cell(f"{int(value):,}", int(value))


# ------------------------------------------------------------------------------ galleries


@dataclass
class Strip:
    """One digit's strip: the PNG of digits and bars, and the HTML labels under each cell."""

    title: str
    details: list[str]
    uri: str
    width: int
    height: int
    cell: int
    labels: list[tuple[str, bool]]  # (text, is a flip) under each cell
    alt: str


@dataclass
class Gallery:
    """Strips sharing one column header (the magnitudes)."""

    title: str
    description: str
    header: list[str]
    cell: int
    strips: list[Strip]
    open: bool = True


def strip_scale(columns: int) -> int:
    """The largest integer upscaling (2 to 3) at which ``columns`` cells fit the text column."""
    geometry = plots.strip_geometry(1)
    per_cell = COLUMN_PIXELS / max(columns, 1)
    scale = int((per_cell - (geometry["cell"] - 28)) // 30)
    return max(2, min(3, scale))


def make_strip(
    images: np.ndarray,
    probabilities: np.ndarray,
    true_class: int,
    *,
    title: str,
    details: Sequence[str] = (),
    reference: int | None = None,
    scale: int = 2,
) -> Strip:
    """A gallery strip: digits and ten-bar charts as one PNG, labelled by prediction.

    Parameters
    ----------
    images : (K, 28, 28) ndarray of uint8
    probabilities : (K, 10) ndarray of float
    true_class : int
    title : str
    details : sequence of str
        Short facts shown beside the title (id, swing...).
    reference : int, optional
        The clean prediction: labels of cells predicting something else are marked as flips.
    scale : int
    """
    pixels = plots.digit_strip(images, probabilities, true_class, scale=scale)
    predicted = probabilities.argmax(axis=1)
    top = probabilities.max(axis=1)
    labels = [(f"{p} · {q:.2f}", reference is not None and p != reference)
              for p, q in zip(predicted, top)]
    alt = f"{title}: predictions " + ", ".join(str(p) for p in predicted)
    return Strip(title=title, details=list(details), uri=png_data_uri(pixels, plots.strip_palette()),
                 width=pixels.shape[1], height=pixels.shape[0],
                 cell=plots.strip_geometry(scale)["cell"], labels=labels, alt=alt)


# --------------------------------------------------------------------- the study report


def _slug(name: str) -> str:
    # Same rule as the default run directory, so reports/<slug>.html matches runs/<slug>.
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "study"


def default_report_path(run_dir: str | os.PathLike) -> Path:
    """``reports/<slug of the study name>.html``, relative to the current directory."""
    run = _read_run_json(Path(run_dir))
    return Path("reports") / f"{_slug(str(run.get('study', {}).get('name') or Path(run_dir).name))}.html"


def _read_run_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir}: not a run directory (no run.json)") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


#: Bootstrap resamples behind every interval of the report.
N_BOOT = 1000
#: Quantile bins of the ambiguity and morphometric stratifications.
STRATA = 5
#: A family's headline magnitude is the smallest at which at least this share of predictions
#: flips (or its largest magnitude when none does).
HEADLINE_FLIP = 0.10
#: Digits per gallery (the runner stores up to 6 per selection).
GALLERY_SIZE = 4
#: Morph strips shown per morph family.
MORPH_EXAMPLES = 4

#: How the findings say "applying family X at magnitude m"; {m} is the magnitude with its unit.
PHRASES = {
    "rotate": "Rotating by {m}",
    "translate_x": "Shifting sideways by {m}",
    "translate_y": "Shifting vertically by {m}",
    "translate": "Shifting by {m} in a random direction",
    "scale": "Scaling by {m}",
    "shear": "Shearing by {m}",
    "elastic": "An elastic distortion of {m}",
    "thin": "Thinning the strokes by {m}",
    "thicken": "Thickening the strokes by {m}",
    "gaussian_noise": "Gaussian noise of sd {m}",
    "salt_pepper": "Salt-and-pepper noise on {m}",
    "blur": "Blurring with sigma {m}",
    "occlude": "An occluding patch of {m}",
    "morph": "Morphing to t = {m} toward another digit",
    "compose": "The composition {label} at {m}",
}

#: The methods section: each quantity the page shows, defined in a sentence or two.
METHODS = (
    ("Accuracy", "The share of perturbed digits whose predicted class (the most probable one) "
     "is the true class. For random families the draws of a digit are averaged first."),
    ("Flip rate", "The share of perturbed digits whose prediction differs from the model's "
     "prediction on the clean digit, right or wrong."),
    ("Mean p(true class)", "The model's probability of the true class, averaged over digits: it "
     "shows confidence draining away before the prediction flips."),
    ("Swing", "For one digit, the range (maximum minus minimum) of the true-class probability "
     "along a family's sweep of magnitudes, clean digit included; averaged over draws at each "
     "magnitude. 0 means the probability never moved, 1 that it went from certain to zero."),
    ("Critical magnitude", "The smallest |magnitude| at which a digit's prediction differs from "
     "its clean prediction (for random families: in a majority of draws); \"never\" when it holds "
     "across the whole grid. Family medians are over digits. For a deterministic family run with "
     "refine = k in the study file, each digit's value is then refined with the model by k bisection "
     "steps between the grid points around it (the last where the prediction held and the first "
     "where it changed), to 1/2^k of the grid spacing."),
    ("Worst-case accuracy", "The share of digits classified correctly at every magnitude of the "
     "grid (clean included), as a grid-search adversary would find them (Engstrom et al. 2019)."),
    ("Flip probability", "ImageNet-P's measure (Hendrycks and Dietterich 2019): for ordered "
     "families, the share of consecutive magnitude steps at which the prediction changes; for "
     "random (noise) families, the share of draws whose prediction differs from the clean one."),
    ("Morph flip point t*", "Along a morph from a source digit (t = 0) to a digit of another "
     "class (t = 1), the t at which the target class overtakes the others, interpolated "
     "linearly between grid points; sharpness is the steepest rise of the target probability "
     "per unit t."),
    ("Ambiguity (margin)", "The clean prediction's top probability minus the second one: small "
     "for digits the model finds ambiguous."),
    ("Stroke thickness and slant", "Morphometrics of the clean digits (Morpho-MNIST's "
     "definitions): thickness is the mean stroke width in pixels, slant the shear of the digit "
     "in degrees."),
    ("Mean swing and flip rate over families", "A digit's swing, and the share of its magnitudes "
     "at which its prediction flips, each averaged over all the families it was perturbed by: one "
     "instability score per digit, used in the ambiguity and shape figure."),
    ("Confidence intervals", "Every interval is a 95% percentile bootstrap over digits "
     f"({N_BOOT} resamples, seeded with the study seed), so it reflects which digits happened to "
     "be in the study. Correlations are Spearman rank correlations with a pairs bootstrap."),
)


@dataclass
class FamilyInfo:
    """One perturbation spec of the run, as the report needs it."""

    label: str
    family: str
    unit: str
    magnitudes: list[float]
    draws: int
    options: dict[str, Any]
    anchor: str
    #: Bisection steps refining the critical magnitudes (0: grid values).
    refine: int = 0

    @property
    def is_morph(self) -> bool:
        return self.family == "morph"


@dataclass
class RunData:
    """Everything the report reads from a run directory."""

    run_dir: Path
    run: dict[str, Any]
    results: pd.DataFrame
    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    exemplars: dict[str, np.ndarray]
    families: list[FamilyInfo]
    models: list[str]
    seed: int
    #: Critical magnitudes refined by bisection (:func:`robust_mnist.runner.load_refined`).
    refined: pd.DataFrame | None = None


#: The results columns the report uses; the other realised parameters are left on disk (the
#: article study has two dozen, mostly NaN, which would double the memory of the table).
RESULT_COLUMNS = ("model", "family", "magnitude", "image", "draw", "label", "clean_pred", "pred",
                  "p_true", "p_pred", *(f"p{k}" for k in range(10)), "param_target_class")


def _load_results(run_dir: Path, run: dict[str, Any]) -> pd.DataFrame:
    from .runner import load_results

    path = run_dir / "results.parquet"
    if run.get("status") == "complete" and path.is_file():
        import pyarrow.parquet as pq

        present = set(pq.read_schema(path).names)
        return pq.read_table(path, columns=[c for c in RESULT_COLUMNS if c in present]).to_pandas()
    results = load_results(run_dir)
    return results[[c for c in RESULT_COLUMNS if c in results.columns]]


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read a run directory's run.json, results, digits and exemplars.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` is not a run directory.
    ValueError
        If the run has no results yet.
    """
    from .runner import load_refined

    run_dir = Path(run_dir)
    run = _read_run_json(run_dir)
    results = _load_results(run_dir, run)
    if results.empty:
        raise ValueError(f"{run_dir}: the run has no results yet (status {run.get('status')!r})")
    with np.load(run_dir / "digits.npz", allow_pickle=False) as npz:
        images, labels, ids = npz["images"], npz["labels"], npz["ids"]
    exemplars: dict[str, np.ndarray] = {}
    if (run_dir / "exemplars.npz").is_file():
        with np.load(run_dir / "exemplars.npz", allow_pickle=False) as npz:
            exemplars = {key: npz[key] for key in npz.files}
    present = set(results["family"].unique())
    families = []
    for index, spec in enumerate(run.get("study", {}).get("perturbations", [])):
        label = str(spec.get("label", spec.get("family")))
        if label not in present:
            continue
        family = str(exemplars.get(f"{label}/family", spec.get("family", label)))
        unit = str(exemplars.get(f"{label}/unit", ""))
        families.append(FamilyInfo(
            label=label, family=family, unit=unit,
            magnitudes=[float(m) for m in spec.get("magnitudes", [])],
            draws=int(spec.get("draws") or 1), options=dict(spec.get("options") or {}),
            anchor=f"family-{index}-{_slug(label).lower()}", refine=int(spec.get("refine") or 0),
        ))
    # unique() first: iterating the million-row string column itself takes seconds.
    present_models = set(results["model"].unique())
    models = [m for m in run.get("models", {}) if m in present_models]
    models += sorted(present_models - set(models))
    return RunData(run_dir, run, results, images, labels, ids, exemplars, families, models,
                   int(run.get("seed") or 0), load_refined(run_dir))


# ---------------------------------------------------------------------------- sections

Segment = tuple[str, str]  # (text, style): style "" plain, "num" a number, "ci" an interval


def _estimate(row: Any, metric: str, as_percent: bool = True, digits: int | None = None) -> list[Segment]:
    value = percent(row[metric], 1 if digits is None else digits) if as_percent else number(row[metric], 2 if digits is None else digits)
    return [(value, "num"), (" " + interval(row[f"{metric}_low"], row[f"{metric}_high"], as_percent, digits), "ci")]


def _duration(run: dict[str, Any]) -> str:
    seconds = run.get("compute_seconds")
    if not _finite(seconds) or not seconds:
        try:
            seconds = (datetime.fromisoformat(run["finished"]) - datetime.fromisoformat(run["started"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            return "–"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _date(run: dict[str, Any]) -> str:
    stamp = run.get("finished") or run.get("started")
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M") if stamp else "–"
    except (TypeError, ValueError):
        return str(stamp)


def _data_text(run: dict[str, Any]) -> str:
    data = run.get("data", {})
    study_data = run.get("study", {}).get("data", {})
    n = data.get("n")
    if data.get("source") == "mnist-test":
        subset = " (a class-stratified subset)" if study_data.get("n") else ""
        return f"MNIST test set: {n:,} digits{subset}" if n else "MNIST test set"
    if data.get("source") == "folder":
        return f"{n:,} images from the folder {data.get('path') or study_data.get('path')}" if n else "a folder of images"
    return str(data.get("source") or "–")


def header_section(data: RunData) -> dict[str, Any]:
    """Title, description and the metadata list of the page header."""
    run = data.run
    study = run.get("study", {})
    models = []
    for name in data.models:
        info = run.get("models", {}).get(name, {}) or {}
        source = f"{info['arch']}, seed {info['seed']}" if info.get("arch") else (info.get("path") or "")
        models.append({"name": name, "source": source, "checksum": info.get("checksum") or ""})
    versions = run.get("versions", {}) or {}
    status = run.get("status", "complete")
    return {
        "name": str(study.get("name") or data.run_dir.name),
        "description": str(study.get("description") or ""),
        "models": models,
        "data": _data_text(run),
        "data_checksum": str((run.get("data") or {}).get("checksum") or ""),
        "seed": run.get("seed", "–"),
        "families": len(data.families),
        "versions": " · ".join(f"{k} {v}" for k, v in versions.items() if v),
        "date": _date(run),
        "duration": _duration(run),
        "status": status,
        "unfinished": status != "complete",
        "command": " ".join(run.get("command") or []),
        "study_file": str(run.get("study_file") or ""),
        "run_dir": str(data.run_dir),
    }


def reproduction_section(data: RunData) -> Table | None:
    """The article's training result beside each model's, when a model came from training."""
    trained = [(name, (data.run.get("models", {}).get(name) or {}).get("training")) for name in data.models]
    trained = [(name, record) for name, record in trained if record]
    if not trained:
        return None
    columns = [("", False), ("Article", True)] + [(name, True) for name, _ in trained]
    rows = []
    for title, key, kind in (
        ("Validation accuracy", "val_accuracy", "percent"),
        ("Validation loss", "val_loss", "loss"),
        ("Stopped at epoch", "stopped_epoch", "int"),
        ("Test accuracy (10,000 digits)", "test_accuracy", "percent"),
    ):
        cells = [Cell(title, title)]
        for value in [ARTICLE.get(key)] + [record.get(key) for _, record in trained]:
            if not _finite(value):
                cells.append(Cell("–", None))
            elif kind == "percent":
                cells.append(Cell(percent(value, 2), float(value)))
            elif kind == "loss":
                cells.append(Cell(f"{float(value):.4f}", float(value)))
            else:
                cells.append(Cell(f"{int(value)}", int(value)))
        rows.append(cells)
    return Table(columns, rows, sortable=False, css_class="compare",
                 caption="The article's figures (98.4% validation accuracy, loss 0.0537, early stop "
                 "at epoch 30) beside this run's training records.")


def _nonzero(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame["magnitude"] != 0]


def headline_magnitude(curve: pd.DataFrame) -> pd.Series | None:
    """The row of one family's per-magnitude curve that the findings quote.

    The smallest |magnitude| at which at least :data:`HEADLINE_FLIP` of predictions flip (the
    larger flip rate on a tie between signs); the largest |magnitude| when none does.
    """
    rows = _nonzero(curve).assign(size=lambda f: f["magnitude"].abs())
    if rows.empty:
        return None
    hits = rows.loc[rows["flip_rate"] >= HEADLINE_FLIP]
    if not hits.empty:
        return hits.sort_values(["size", "flip_rate"], ascending=[True, False]).iloc[0]
    return rows.sort_values(["size", "flip_rate"], ascending=[False, False]).iloc[0]


def confusion_magnitude(curve: pd.DataFrame) -> float | None:
    """The magnitude of the "what does it become" matrix: where half the damage is done.

    The smallest |magnitude| whose flip rate reaches half the family's largest flip rate.
    """
    rows = _nonzero(curve).assign(size=lambda f: f["magnitude"].abs())
    if rows.empty:
        return None
    target = 0.5 * rows["flip_rate"].max()
    hits = rows.loc[rows["flip_rate"] >= target].sort_values(["size", "flip_rate"], ascending=[True, False])
    return float(hits.iloc[0]["magnitude"])


def _phrase(info: FamilyInfo, magnitude: float) -> str:
    text = PHRASES.get(info.family, "{label} at {m}").format(m=magnitude_text(magnitude, info.unit), label=info.label)
    return text if info.label == info.family or "{label}" in PHRASES.get(info.family, "{label}") else f"{text} ({info.label})"


@dataclass
class Aggregates:
    """The metrics the page shows, computed once from the results table."""

    per_magnitude: pd.DataFrame
    swing: pd.DataFrame
    swing_summary: pd.DataFrame
    critical: pd.DataFrame
    critical_summary: pd.DataFrame
    critical_by_class: pd.DataFrame
    worst_case: pd.DataFrame
    flip_probability: pd.DataFrame
    per_class: pd.DataFrame
    clean: pd.DataFrame
    clean_accuracy: pd.DataFrame
    transitions: pd.DataFrame
    morph_pairs: pd.DataFrame
    morphometrics: pd.DataFrame
    correlations: pd.DataFrame
    margin_strata: pd.DataFrame
    pooled: list[dict[str, Any]]


def compute_aggregates(data: RunData) -> Aggregates:
    """Every aggregate of the report, with bootstrap intervals seeded by the study seed."""
    from . import metrics, stats

    results, seed = data.results, data.seed
    options = {"seed": seed, "n_boot": N_BOOT}
    random = {f.label for f in data.families if f.draws > 1}
    # The sweeps and the per-digit swing each take seconds on a large run: computed once here
    # and passed to every metric that would otherwise recompute them.
    sweeps = metrics.family_sweeps(results)
    swing = metrics.swing(results, sweeps=sweeps)
    critical = metrics.critical_magnitudes(results, refined=data.refined, sweeps=sweeps)
    clean = metrics.clean_predictions(results)
    morphometrics = _morphometrics(data.images)
    transitions = metrics.morph_transitions(results)
    return Aggregates(
        per_magnitude=metrics.per_magnitude(results, **options, sweeps=sweeps),
        swing=swing,
        swing_summary=stats.grouped_bootstrap_ci(swing, ["model", "family"], ["swing", "flip_rate"], "mean", N_BOOT, seed=seed),
        critical=critical,
        critical_summary=metrics.critical_summary(critical, "family", **options),
        critical_by_class=metrics.critical_summary(critical, "class", **options),
        worst_case=metrics.worst_case_accuracy(results, **options, sweeps=sweeps),
        flip_probability=metrics.flip_probability(results, random, **options, sweeps=sweeps),
        per_class=metrics.per_class(results, **options, swing_table=swing),
        clean=clean,
        clean_accuracy=stats.grouped_bootstrap_ci(clean, ["model"], "correct", "mean", N_BOOT, seed=seed),
        transitions=transitions,
        morph_pairs=metrics.morph_summary(transitions, **options) if len(transitions) else pd.DataFrame(),
        morphometrics=morphometrics,
        # Per family, only against the margin (the article's question): each bootstrapped
        # rank correlation over 10,000 digits costs about a quarter of a second.
        correlations=metrics.instability_correlation(results, "margin", **options, swing_table=swing),
        margin_strata=metrics.ambiguity_stratification(results, "margin", STRATA, **options, swing_table=swing),
        pooled=pooled_instability(swing, clean, morphometrics, data.models[0], seed),
    )


def _morphometrics(images: np.ndarray) -> pd.DataFrame:
    """The morphometrics the page shows, thickness and slant, of the clean digits, by image.

    Only these two: the full :func:`robust_mnist.morphometrics.measure` spends most of its
    time on width and height, which the page does not show.
    """
    from .data import to_float
    from .morphometrics import slant, thickness

    images = to_float(images)
    table = pd.DataFrame({"thickness": thickness(images), "slant": slant(images)})
    table.index.name = "image"
    return table


#: The digit properties set against instability: (name, title, axis label).
COVARIATES = (
    ("margin", "Ambiguity", "fifths of the clean margin\n(Q1: most ambiguous)"),
    ("thickness", "Stroke thickness", "fifths of stroke thickness\n(Q1: thinnest; median px)"),
    ("slant", "Slant", "fifths of slant\n(Q1: leaning left; median °)"),
)


def _quantile_bins(values: pd.Series, bins: int = STRATA) -> pd.Series:
    """Quantile bin (0 = smallest values) of each value, ties kept together."""
    if values.nunique() < 2:
        return pd.Series(0, index=values.index)
    return pd.qcut(values.rank(method="average"), bins, labels=False, duplicates="drop").astype(int)


def pooled_instability(
    swing: pd.DataFrame, clean: pd.DataFrame, morphometrics: pd.DataFrame, model: str, seed: int
) -> list[dict[str, Any]]:
    """Each digit's swing averaged over families, against its ambiguity, thickness and slant.

    For every covariate: the Spearman correlation of the pooled swing with it (bootstrap
    interval), and per quantile fifth of the covariate the mean pooled swing and flip rate
    (a digit's flip rate averaged over families) with intervals.
    """
    from . import stats

    pooled = _select(swing, model=model).groupby("image")[["swing", "flip_rate"]].mean()
    values = {"margin": _select(clean, model=model).set_index("image")["margin"],
              "thickness": morphometrics["thickness"], "slant": morphometrics["slant"]}
    result = []
    for name, title, xlabel in COVARIATES:
        frame = pooled.assign(value=values[name].reindex(pooled.index)).dropna()
        if len(frame) < 3:
            continue
        frame["bin"] = _quantile_bins(frame["value"])
        strata = stats.grouped_bootstrap_ci(frame, "bin", ["swing", "flip_rate"], "mean", N_BOOT, seed=seed)
        medians = frame.groupby("bin")["value"].median()
        strata["fifth"] = [f"Q{b + 1}\n{_significant(medians[b], 2)}" for b in strata["bin"]]
        rho, low, high = stats.correlation_ci(frame["swing"], frame["value"], "spearman", N_BOOT, seed=seed)
        result.append({"name": name, "title": title, "xlabel": xlabel, "strata": strata,
                       "correlation": rho, "correlation_low": low, "correlation_high": high,
                       "n_digits": len(frame)})
    return result


def _select(frame: pd.DataFrame, **equal: Any) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in equal.items():
        mask &= (frame[column] == value).to_numpy()
    return frame.loc[mask]


def _one(frame: pd.DataFrame, **equal: Any) -> pd.Series | None:
    rows = _select(frame, **equal)
    return None if rows.empty else rows.iloc[0]


def _fragility_order(data: RunData, agg: Aggregates) -> pd.DataFrame:
    """Worst-case accuracy rows of the primary model's distortion families, most fragile first."""
    morphs = {f.label for f in data.families if f.is_morph}
    worst = _select(agg.worst_case, model=data.models[0])
    return worst.loc[~worst["family"].isin(morphs)].sort_values(["worst_case_accuracy", "family"])


def findings_section(data: RunData, agg: Aggregates) -> list[list[Segment]]:
    """The headline findings, as sentences of segments (plain text, numbers, intervals)."""
    model = data.models[0]
    findings: list[list[Segment]] = []
    clean = _one(agg.clean_accuracy, model=model)
    if clean is not None:
        findings.append([("On the study's clean digits the model is ", "")]
                        + _estimate(clean, "correct") + [(" accurate.", "")])

    # Most and least fragile families, by worst-case accuracy over their grid. Morphs are left
    # out: at t = 1 the digit *is* another class, so changing the prediction is the point.
    info = {f.label: f for f in data.families}
    worst = _fragility_order(data, agg)
    if len(worst) >= 1:
        first = worst.iloc[0]
        family = info.get(first["family"])
        sentence = [("Most fragile: ", ""), (str(first["family"]), "strong"), (". Only ", "")]
        sentence += _estimate(first, "worst_case_accuracy")
        sentence += [(" of digits stay correctly classified at every magnitude up to ", ""),
                     (magnitude_text(first["grid_max"], family.unit if family else ""), "num"),
                     (" (worst-case accuracy)", "")]
        if len(worst) > 1:
            last = worst.iloc[-1]
            sentence += [("; the least fragile, ", ""), (str(last["family"]), "strong"), (", keeps ", "")]
            sentence += _estimate(last, "worst_case_accuracy")
        findings.append(sentence + [(".", "")])

    # Ambiguity: do digits with a small clean margin swing more?
    pooled = {p["name"]: p for p in agg.pooled}
    margin = _select(agg.correlations, model=model).dropna(subset=["correlation"])
    if "margin" in pooled:
        overall = pooled["margin"]
        if overall["correlation_high"] < 0:
            verdict = "Ambiguous digits swing more. "
        elif overall["correlation_low"] > 0:
            verdict = "Ambiguous digits swing less, not more. "
        else:
            verdict = "No clear relation between ambiguity and swing. "
        sentence = [(verdict, "strong"),
                    ("A digit's swing averaged over the families correlates with its clean margin at ρ = ", "")]
        sentence += _estimate(overall, "correlation", as_percent=False)
        strata = overall["strata"]
        if len(strata) >= 2:
            sentence += [("; the most ambiguous fifth of digits swings by ", "")]
            sentence += _estimate(strata.iloc[0], "swing", as_percent=False)
            sentence += [(" and flips at ", "")] + _estimate(strata.iloc[0], "flip_rate")
            sentence += [(" of magnitudes, the most confident fifth by ", "")]
            sentence += _estimate(strata.iloc[-1], "swing", as_percent=False)
            sentence += [(" and at ", "")] + _estimate(strata.iloc[-1], "flip_rate")
        if len(margin):
            negative = int((margin["correlation_high"] < 0).sum())
            strongest = margin.sort_values("correlation").iloc[0]
            sentence += [(f". Per family, the correlation is clearly negative under {negative} of {len(margin)}; "
                          "most strongly under ", ""), (str(strongest["family"]), "strong"), (" (ρ = ", "")]
            sentence += _estimate(strongest, "correlation", as_percent=False) + [(")", "")]
        findings.append(sentence + [(".", "")])

    for name, noun, more in (("thickness", "stroke thickness", "thicker"), ("slant", "slant", "more right-leaning")):
        if name not in pooled:
            continue
        row = pooled[name]
        if row["correlation_low"] > 0:
            verdict = f"{more} digits swing more"
        elif row["correlation_high"] < 0:
            verdict = f"{more} digits swing less"
        else:
            verdict = "no clear relation"
        findings.append([(f"Swing and {noun}: ", "strong"), (f"{verdict}; ρ = ", "")]
                        + _estimate(row, "correlation", as_percent=False) + [(".", "")])

    for morph in (f for f in data.families if f.is_morph):
        pairs = _select(agg.morph_pairs, model=model, family=morph.label) if len(agg.morph_pairs) else pd.DataFrame()
        if len(pairs):
            # A pair needs a few paths to be quoted: one odd digit is not a finding.
            enough = max(3, int(pairs["n_digits"].median() // 2))
            pairs = pairs.loc[np.isfinite(pairs["t_star"]) & (pairs["n_digits"] >= enough)]
        if len(pairs):
            early = pairs.sort_values(["t_star", "n_digits"], ascending=[True, False]).iloc[0]
            findings.append([("Morphs ", ""), (f"({morph.label}) ", "") if morph.label != "morph" else ("", ""),
                             ("flip earliest from ", ""), (f"{int(early['label'])} to {int(early['target'])}", "strong"),
                             (": median t* = ", "")] + _estimate(early, "t_star", as_percent=False)
                            + [(f" over {int(early['n_digits'])} paths.", "")])
    return [[segment for segment in sentence if segment[0]] for sentence in findings]


def family_findings(data: RunData, agg: Aggregates) -> list[list[Segment]]:
    """One sentence per family at its headline magnitude, most fragile family first."""
    model = data.models[0]
    order = _fragility_order(data, agg)["family"].tolist()
    info = {f.label: f for f in data.families}
    sentences = []
    for label in order + [f.label for f in data.families if f.label not in order]:
        family = info.get(label)
        curve = _select(agg.per_magnitude, model=model, family=label)
        row = headline_magnitude(curve) if family else None
        if row is None:
            continue
        clean = _one(curve, magnitude=0.0)
        largest = row["flip_rate"] < HEADLINE_FLIP
        sentence = [(_phrase(family, row["magnitude"]), "")]
        sentence += [(", the largest tested, flips only " if largest else " flips ", "")]
        sentence += _estimate(row, "flip_rate")
        sentence += [(" of predictions; accuracy ", "")] + _estimate(row, "accuracy")
        if clean is not None:
            sentence += [(f" (clean {percent(clean['accuracy'])})", "")]
        sentences.append(sentence + [(".", "")])
    return sentences


def summary_table(data: RunData, agg: Aggregates) -> Table:
    """Per family (and model): the key aggregates with their intervals, sortable."""
    several = len(data.models) > 1
    columns = ([("Model", False)] if several else []) + [
        ("Family", False), ("Grid", True), ("Worst-case acc.", True), ("Flip prob.", True),
        ("Median critical", True), ("Mean swing", True),
    ]
    rows = []
    for model in data.models:
        for family in data.families:
            key = {"model": model, "family": family.label}
            worst = _one(agg.worst_case, **key)
            flips = _one(agg.flip_probability, **key)
            critical = _one(agg.critical_summary, **key)
            swing = _one(agg.swing_summary, **key)
            digits = int(swing["n_digits"]) if swing is not None else 0
            unit = f"{family.unit} · " if family.unit and len(family.unit) <= 20 else ""
            draws = f" · {family.draws} draws" if family.draws > 1 else ""
            cells = [text_cell(model)] if several else []
            cells += [
                Cell(family.label, family.label, f"{unit}{digits:,} digits"),
                Cell(_grid_text(family), max((abs(m) for m in family.magnitudes), default=None),
                     f"{len(family.magnitudes)} points{draws}"),
                estimate_cell(worst, "worst_case_accuracy", True) if worst is not None else Cell("–"),
                estimate_cell(flips, "flip_probability", True) if flips is not None else Cell("–"),
                _critical_cell(critical, family.unit),
                estimate_cell(swing, "swing") if swing is not None else Cell("–"),
            ]
            rows.append(cells)
    return Table(columns, rows, css_class="summary", caption=(
        "Worst-case acc.: correct at every magnitude of the grid. Flip prob.: ImageNet-P's flip "
        "probability. Median critical: the median magnitude at which predictions first change. "
        "Brackets: 95% bootstrap intervals over digits. Click a column header to sort."))


def _grid_text(family: FamilyInfo) -> str:
    """``"−45° … 45°"``: the range of a family's grid."""
    if not family.magnitudes:
        return "–"
    low, high = min(family.magnitudes), max(family.magnitudes)
    return f"{magnitude_text(low, family.unit, short=True)} … {magnitude_text(high, family.unit, short=True)}"


def _critical_cell(row: pd.Series | None, unit: str) -> Cell:
    if row is None:
        return Cell("–")
    value = row["critical_magnitude"]
    text = "never" if np.isinf(value) else magnitude_text(value, unit)
    note = ""
    if _finite(row["critical_magnitude_low"]) or np.isinf(row["critical_magnitude_low"]):
        low, high = row["critical_magnitude_low"], row["critical_magnitude_high"]
        note = f"[{magnitude_text(low, unit) if np.isfinite(low) else 'never'}, {magnitude_text(high, unit) if np.isfinite(high) else 'never'}]"
    return Cell(text, 1e300 if np.isinf(value) else float(value), note)


def _gallery_strips(data: RunData, family: FamilyInfo, selection: str, model_index: int,
                    scale: int) -> list[Strip]:
    ex = data.exemplars
    key = f"{family.label}/{selection}"
    if key not in ex:
        return []
    chosen = [int(i) for i in ex[key][model_index] if i >= 0][:GALLERY_SIZE]
    gallery = list(ex[f"{family.label}/images"])
    magnitudes = ex[f"{family.label}/magnitudes"]
    strips = []
    for image in chosen:
        k = gallery.index(image)
        probabilities = ex[f"{family.label}/probs"][model_index, k]
        label = int(data.labels[image])
        swing = float(ex[f"{family.label}/swing"][model_index, k])
        critical = float(ex[f"{family.label}/critical"][model_index, k])
        details = [f"true {label}", f"swing {swing:.2f}",
                   "never flips" if not np.isfinite(critical) else f"flips at {magnitude_text(critical, family.unit)}"]
        clean_column = int(np.argmin(np.abs(magnitudes)))
        strips.append(make_strip(
            ex[f"{family.label}/strips"][k], probabilities, label,
            title=str(data.ids[image]), details=details,
            reference=int(probabilities[clean_column].argmax()), scale=scale))
    return strips


GALLERIES = (
    ("unstable", "Most unstable digits", "the largest swing of the true-class probability along the sweep", True),
    ("early_flip", "Earliest flips", "the smallest critical magnitude (any draw)", False),
    ("stable", "Most stable digits", "the smallest swing, among digits classified correctly when clean", False),
)


def galleries(data: RunData, family: FamilyInfo, model_index: int = 0) -> list[Gallery]:
    """The family's three galleries, from exemplars.npz (empty when the run has none)."""
    ex = data.exemplars
    if f"{family.label}/magnitudes" not in ex:
        return []
    magnitudes = ex[f"{family.label}/magnitudes"]
    scale = strip_scale(len(magnitudes))
    header = ["clean" if m == 0 else magnitude_text(m, family.unit, short=True) for m in magnitudes]
    result = []
    for selection, title, description, is_open in GALLERIES:
        strips = _gallery_strips(data, family, selection, model_index, scale)
        if strips:
            result.append(Gallery(title, f"Selected by {description}.", header,
                                  plots.strip_geometry(scale)["cell"], strips, is_open))
    return result


def highlight_gallery(data: RunData, agg: Aggregates, size: int = 3) -> Gallery | None:
    """The article's figure, systematically: the most unstable digits of the most fragile family."""
    info = {f.label: f for f in data.families}
    for label in _fragility_order(data, agg)["family"]:
        family = info.get(label)
        found = galleries(data, family) if family is not None else []
        if found and found[0].strips:
            gallery = found[0]
            gallery.strips = gallery.strips[:size]
            gallery.title = f"The digits that swing most under {label}"
            return gallery
    return None


def family_sections(data: RunData, agg: Aggregates) -> list[dict[str, Any]]:
    """Per family: curves, critical magnitudes, what digits become, galleries."""
    from .metrics import CLEAN, confusion

    model = data.models[0]
    results = data.results
    # One pass to split the table: confusion() would otherwise scan all rows per family.
    primary = results.loc[(results["model"] == model).to_numpy()]
    by_family = dict(tuple(primary.groupby("family", sort=False)))
    clean_rows = by_family.get(CLEAN, primary.iloc[:0])
    sections = []
    for family in data.families:
        curve = _select(agg.per_magnitude, family=family.label)
        primary = _select(curve, model=model)
        critical = _select(agg.critical, model=model, family=family.label)["critical_magnitude"].to_numpy(float)
        grid = np.unique(_nonzero(primary)["magnitude"].to_numpy(float))
        figures = {
            "curves": svg_data_uri(plots.family_curves(curve, unit=family.unit)),
            "critical": svg_data_uri(plots.critical_magnitude_plot(critical, grid, unit=family.unit)),
        }
        become = confusion_magnitude(primary)
        if become is not None:
            rows = pd.concat([clean_rows, by_family[family.label]], ignore_index=True)
            matrix = confusion(rows, family.label, become, model=model).to_numpy()
            figures["confusion"] = svg_data_uri(plots.confusion_plot(
                matrix, title=f"At {magnitude_text(become, family.unit)}: true → predicted (%)"))
        headline = headline_magnitude(primary)
        clean = _one(primary, magnitude=0.0)
        worst = _one(agg.worst_case, model=model, family=family.label)
        facts = []
        if clean is not None:
            facts.append([("Clean accuracy ", "")] + _estimate(clean, "accuracy"))
        if headline is not None:
            facts.append([(f"at {magnitude_text(headline['magnitude'], family.unit)}: ", ""), ("flip rate ", "")]
                         + _estimate(headline, "flip_rate"))
        if worst is not None:
            facts.append([("worst-case accuracy ", "")] + _estimate(worst, "worst_case_accuracy"))
        options = ", ".join(f"{k} = {v}" for k, v in family.options.items())
        sections.append({
            "info": family,
            "grid": ", ".join(magnitude_text(m, family.unit, short=True) for m in family.magnitudes),
            "options": options,
            "n_digits": int(_select(agg.swing, model=model, family=family.label).shape[0]),
            "figures": figures,
            "confusion_magnitude": magnitude_text(become, family.unit) if become is not None else "",
            "facts": facts,
            "galleries": galleries(data, family),
        })
    return sections


def morph_sections(data: RunData, agg: Aggregates) -> list[dict[str, Any]]:
    """Per morph family: strips with traced probabilities, and the earliest-flipping pairs."""
    model = data.models[0]
    ex = data.exemplars
    sections = []
    for family in (f for f in data.families if f.is_morph):
        figures = []
        label = family.label
        target_key = f"{label}/param/target_class"
        if f"{label}/strips" in ex and target_key in ex:
            transitions = _select(agg.transitions, model=model, family=label, draw=0)
            by_image = transitions.set_index("image") if len(transitions) else pd.DataFrame()
            gallery = list(ex[f"{label}/images"])
            t = ex[f"{label}/magnitudes"]
            # The earliest flip, the largest swings (complete transitions) and the most stable.
            chosen: list[tuple[int, str]] = []
            for selection, count, why in (("early_flip", 1, "earliest flip"), ("unstable", MORPH_EXAMPLES - 2, "largest swing"),
                                          ("stable", 1, "most stable")):
                picks = [int(i) for i in ex.get(f"{label}/{selection}", np.empty((1, 0)))[0]
                         if i >= 0 and int(i) not in {c for c, _ in chosen}]
                chosen += [(image, why) for image in picks[:count]]
            for image, why in chosen:
                k = gallery.index(image)
                probabilities = ex[f"{label}/probs"][0, k]
                targets = ex[target_key][k]
                target = int(np.nanmax(targets)) if np.isfinite(targets).any() else None
                source = int(data.labels[image])
                if target is None:
                    continue
                t_star = None
                if image in by_image.index:
                    row = by_image.loc[[image]]
                    row = row.loc[row["target"] == target]
                    t_star = float(row["t_star"].iloc[0]) if len(row) else None
                figure = plots.morph_figure(t, ex[f"{label}/strips"][k], probabilities[:, source],
                                            probabilities[:, target], t_star=t_star,
                                            source_class=source, target_class=target)
                figures.append({
                    "uri": svg_data_uri(figure),
                    "caption": f"{data.ids[image]} ({why}): {source} → {target}; "
                               + (f"t* = {t_star:.2f}" if t_star is not None and np.isfinite(t_star) else "the prediction never reaches the target"),
                })
        pairs = _select(agg.morph_pairs, model=model, family=label) if len(agg.morph_pairs) else pd.DataFrame()
        table = Table([("Source", True), ("Target", True), ("Paths", True), ("Median t*", True),
                       ("Reached target", True), ("Sharpness", True)], caption=(
            "Median flip point t* per class pair (never: fewer than half the paths reach the target), "
            "the share of paths whose prediction reaches the target, and the mean sharpness (steepest "
            "rise of p(target) per unit t). Sorted by median t*; click a header to re-sort."))
        if len(pairs):
            reached = _select(agg.transitions, model=model, family=label).assign(
                reached=lambda f: np.isfinite(f["t_star"]).astype(float))
            reached = reached.groupby(["label", "target"])["reached"].mean()
            for _, row in pairs.sort_values(["t_star", "label", "target"]).iterrows():
                share = reached.get((row["label"], row["target"]), np.nan)
                table.rows.append([
                    int_cell(row["label"]), int_cell(row["target"]), int_cell(row["n_digits"]),
                    _critical_cell(row.rename({"t_star": "critical_magnitude", "t_star_low": "critical_magnitude_low",
                                               "t_star_high": "critical_magnitude_high"}), "t"),
                    Cell(percent(share, 0), float(share) if _finite(share) else None),
                    estimate_cell(row, "sharpness", digits=1),
                ])
        sections.append({"info": family, "figures": figures, "pairs": table})
    return sections


def ambiguity_section(data: RunData, agg: Aggregates) -> dict[str, Any]:
    """Instability against ambiguity, stroke thickness and slant: a figure and a table."""
    model = data.models[0]
    figure = None
    if agg.pooled:
        figure = svg_data_uri(plots.stratified_panels(
            [(p["strata"], "fifth", p["xlabel"], p["title"]) for p in agg.pooled],
            metrics=(("swing", "mean swing", False), ("flip_rate", "mean flip rate", True))))
    summary = [[(f"{p['title']}: ", "strong"), ("ρ = ", "")] + _estimate(p, "correlation", as_percent=False)
               + [(f" over {p['n_digits']:,} digits", "")] for p in agg.pooled]
    table = Table([("Family", False), ("ρ (swing, margin)", True), ("Swing Q1 (most ambiguous)", True),
                   ("Swing Q5 (most confident)", True)],
                  caption="Per family: the Spearman correlation between each digit's swing and its clean "
                  "margin (negative: ambiguous digits swing more), and the mean swing of the fifth of digits "
                  "with the smallest and with the largest clean margin.")
    correlations = _select(agg.correlations, model=model)
    for family in data.families:
        row = _one(correlations, family=family.label)
        cells = [Cell(family.label, family.label),
                 estimate_cell(row, "correlation") if row is not None else Cell("–")]
        strata = _select(agg.margin_strata, model=model, family=family.label).sort_values("bin")
        for position in (0, -1):
            cells.append(estimate_cell(strata.iloc[position], "swing") if len(strata) else Cell("–"))
        table.rows.append(cells)
    return {"figure": figure, "summary": summary, "table": table}


def per_class_section(data: RunData, agg: Aggregates) -> dict[str, Any]:
    """Per true class: a family-by-class swing map and a sortable table."""
    model = data.models[0]
    labels = [f.label for f in data.families]
    per_class = _select(agg.per_class, model=model)
    per_class = per_class.assign(_order=per_class["family"].map({label: i for i, label in enumerate(labels)}))
    per_class = per_class.sort_values(["_order", "label"], kind="stable")
    matrix = np.full((len(labels), 10), np.nan)
    for _, row in per_class.iterrows():
        if row["family"] in labels:
            matrix[labels.index(row["family"]), int(row["label"])] = row["swing"]
    figure = svg_data_uri(plots.class_heatmap(matrix, labels, title="Mean swing by family and true class")) if labels else None
    units = {f.label: f.unit for f in data.families}
    table = Table([("Family", False), ("Class", True), ("Digits", True), ("Clean acc.", True),
                   ("Flip rate", True), ("Mean swing", True), ("Median critical", True)],
                  caption="Per family and true class: clean accuracy, the flip rate over the family's "
                  "non-zero magnitudes, the mean swing and the median critical magnitude. Click a "
                  "header to sort.")
    critical = _select(agg.critical_by_class, model=model)
    for _, row in per_class.iterrows():
        crit = _one(critical, family=row["family"], label=row["label"])
        table.rows.append([
            Cell(str(row["family"]), str(row["family"])), int_cell(row["label"]), int_cell(row["n_digits"]),
            estimate_cell(row, "clean_accuracy", True), estimate_cell(row, "flip_rate", True), estimate_cell(row, "swing"),
            _critical_cell(crit, units.get(row["family"], "")),
        ])
    return {"figure": figure, "table": table}


def _compact(count: int) -> str:
    """``1234567 -> "1.2 M"``, ``45600 -> "45.6 k"``."""
    for size, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if count >= size:
            return f"{count / size:.1f}{suffix}"
    return str(count)


def build_context(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Everything ``report.html.j2`` renders, from a run directory."""
    data = load_run(run_dir)
    agg = compute_aggregates(data)
    header = header_section(data)
    families = family_sections(data, agg)
    morphs = morph_sections(data, agg)
    toc = [("findings", "Findings", []), ("overview", "Overview", [])]
    reproduction = reproduction_section(data)
    histories = {name: (data.run.get("models", {}).get(name) or {}).get("training") or {} for name in data.models}
    histories = {name: record["history"] for name, record in histories.items() if record.get("history")}
    training_figure = svg_data_uri(plots.training_curves(histories, reference=ARTICLE)) if histories else None
    if reproduction is not None:
        toc.insert(0, ("reproduction", "Reproduction", []))
    toc.append(("families", "Families", [(f["info"].anchor, f["info"].label) for f in families]))
    if morphs:
        toc.append(("morphs", "Morphs", []))
    toc += [("ambiguity", "Ambiguity and shape", []), ("classes", "Per class", []), ("methods", "Methods", [])]
    clean = _one(agg.clean_accuracy, model=data.models[0])
    stats = [
        (f"{len(data.images):,}", "digits"),
        (f"{len(data.families)}", "perturbation families"),
        (_compact(len(data.results)), "predictions"),
    ]
    if clean is not None:
        stats.append((percent(clean["correct"]), "clean accuracy"))
    return {
        "title": f"{header['name']}: robustness report",
        "stats": stats,
        "header": header,
        "reproduction": reproduction,
        "training_figure": training_figure,
        "findings": findings_section(data, agg),
        "highlight": highlight_gallery(data, agg),
        "family_findings": family_findings(data, agg),
        "summary": summary_table(data, agg),
        "overview_figure": svg_data_uri(plots.overview_grid(
            _select(agg.per_magnitude, model=data.models[0]), [(f.label, f.unit) for f in data.families]))
        if data.families else None,
        "families": families,
        "morphs": morphs,
        "ambiguity": ambiguity_section(data, agg),
        "classes": per_class_section(data, agg),
        "methods": METHODS,
        "toc": toc,
        "primary_model": data.models[0],
        "several_models": len(data.models) > 1,
        "palette": {"true": plots.TRUE_COLOUR, "wrong": plots.WRONG_COLOUR, "other": plots.OTHER_COLOUR},
    }


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the study's HTML report.

    Parameters
    ----------
    run_dir : path-like
        A run directory written by :mod:`robust_mnist.runner` (an unfinished run is reported
        as far as it got).
    out : path-like, optional
        The HTML file; default ``reports/<study name>.html`` (see :func:`default_report_path`).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` holds no run.
    ValueError
        If the run has no results yet.
    """
    run_dir = Path(run_dir)
    out = default_report_path(run_dir) if out is None else Path(out)
    logger.info("report: reading %s and computing the aggregates", run_dir)
    context = build_context(run_dir)
    path = render_page("report.html.j2", context, out)
    logger.info("report: wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path

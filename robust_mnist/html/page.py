"""The page machinery of the HTML reports: templates, assets, data URIs and the atomic write.

:func:`template_environment` is jinja2 with autoescaping on; :func:`render_page` renders a
template of ``robust_mnist/html/templates`` with the shared CSS and script inline, under a
Content-Security-Policy (:func:`content_security_policy`) that allows no request at all, and
writes the file atomically; :func:`svg_data_uri` and :func:`png_data_uri` embed figures and
digit images as ``data:`` URIs with deterministic bytes.

Self-containment: every image is a ``data:`` URI, CSS and script are inline, and the CSP meta
tag (``default-src 'none'; img-src data:``) makes the browser refuse anything else, so a page
opens offline from disk and cannot leak a request even if a future template slips.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure
from PIL import Image

from .. import __version__
from .format import interval, percent


def template_environment() -> jinja2.Environment:
    """The jinja2 environment of the report templates, escaping every value.

    ``autoescape=True`` rather than ``select_autoescape``: the templates end in ``.html.j2``,
    which extension-based selection would leave unescaped.
    """
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("robust_mnist.html", "templates"),
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
    return (resources.files("robust_mnist.html") / "templates" / name).read_text(encoding="utf-8")


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
        A template name under ``robust_mnist/html/templates`` that extends ``page.html.j2``.
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
#: escape (", &, %), a fragment (#), and newlines, which URL parsing would strip. "%" first:
#: the others' escapes start with one.
_SVG_ESCAPES = (("%", "%25"), ("#", "%23"), ('"', "%22"), ("&", "%26"), ("\n", "%0A"), ("\r", "%0D"))


def svg_data_uri(figure: Figure) -> Markup:
    """A figure as an SVG data URI, with deterministic bytes.

    SVG goes in as an ``<img>`` rather than inline: matplotlib's element ids (glyphs, clip
    paths) are only unique within one SVG document, and several inlined figures would collide.
    The SVG is percent-encoded only where it must be (a third smaller than base64), which
    also makes the returned string safe inside a double-quoted HTML attribute.
    """
    buffer = io.BytesIO()
    with matplotlib.rc_context(_SVG_SETTINGS):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue().decode("utf-8")
    for character, escape in _SVG_ESCAPES:  # str.replace runs many times faster than str.translate
        text = text.replace(character, escape)
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

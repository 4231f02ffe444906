"""The HTML reports: self-contained pages drawn from a run directory or a comparison.

:mod:`~robust_mnist.html.page` holds the page machinery (jinja2 with autoescaping, the
Content-Security-Policy, data URIs, the atomic write), :mod:`~robust_mnist.html.format` every
number and text format, :mod:`~robust_mnist.html.components` the tables, sentences and digit
galleries, :mod:`~robust_mnist.html.figures` the drawing of figures (in worker processes for a
large study); :mod:`~robust_mnist.html.study_report` (with
:mod:`~robust_mnist.html.study_sections`) writes a study's report and
:mod:`~robust_mnist.html.compare_report` a comparison's. Pages show numbers computed by the
metrics and statistics modules; nothing here computes one.
"""

"""The live explorer behind ``robust-mnist explore``: draw a digit, push it, watch the probabilities.

:mod:`.session` holds the models (loaded once) and the computations: a picture or canvas
preprocessed exactly as ``predict`` does, the sliders composed through the ``compose`` family in
a fixed order, every model's probabilities, and saving a digit. :mod:`.sweep` runs every
family's sweep of one digit in one batch and analyses it with the study's own per-digit metrics.
:mod:`.server` serves the page and its JSON endpoints (Starlette on Uvicorn), and
``static/`` holds the page itself. Nothing imports this package but the ``explore`` command.
"""

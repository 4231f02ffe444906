"""The study runner: perturb -> predict for every model, perturbation spec, magnitude and draw.

Work is split into *cells* (:mod:`.cells`: one per spec label, magnitude and draw, plus the
``clean`` cell). A cell's perturbed digits depend only on the spec, the magnitude and the draw,
so they are computed once and fed to every model: every model sees exactly the same perturbed
digits, which makes comparisons between models paired. :mod:`.inputs` loads the study's digits
and models, :mod:`.executors` computes cells here, in a process pool or on a Dask cluster (the
same bits either way), :mod:`.run` plans a run, computes what is missing and consolidates the
results through :mod:`robust_mnist.rundir`, :mod:`.exemplars` picks the report's gallery digits
and :mod:`.refine` bisects critical magnitudes with the model.

This module holds only the default chunk size, so that the command line can show it without
importing the runner.
"""

#: Images perturbed per ``apply`` call by default: a whole MNIST-test cell at once, so that
#: families that compute their output in ``sample_params`` (thin, thicken) reuse it.
DEFAULT_CHUNK_SIZE = 10_000

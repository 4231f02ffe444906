"""ONNX model files as classifiers: checked with the ``onnx`` package, then run by ONNX Runtime.

:func:`load_onnx_classifier` turns a ``.onnx`` file (a PyTorch ``torch.onnx.export``, a Keras
3 ``model.export(..., format="onnx")``...) into a :class:`OnnxClassifier`, which feeds the
model the digits in the form it was trained on and returns probabilities like any other
:class:`~robust_mnist.classifier.Classifier`. That form is the model's *input contract*
(:class:`ModelContract`):

``input_layout``
    ``"nhwc"`` (N, 28, 28, 1), ``"nchw"`` (N, 1, 28, 28), ``"nhw"`` (N, 28, 28) or ``"flat"``
    (N, 784). Detected from the graph's input shape when only one layout fits it (a dynamic
    dimension fits any size): a rank-4 input whose dynamic dimensions let it fit both
    ``"nhwc"`` and ``"nchw"``, or an input without a shape, needs it declared.
``input_scale``
    ``"unit"`` (pixels in [0, 1], this tool's and Keras's convention), ``"255"`` ([0, 255])
    or ``"mnist"`` (torchvision's MNIST recipe: ``(x - 0.1307) / 0.3081`` on [0, 1] pixels),
    or an explicit ``(mean, std)`` on [0, 1] pixels. A graph does not say what it was
    trained on, so this is never detected: undeclared means ``"unit"``.
``output``
    ``"probabilities"`` or ``"logits"`` (any unnormalised scores, log-probabilities included:
    the softmax is applied, in float64 with the row maximum subtracted, then cast to float32).
    The rule, in order: a declared value wins; else, if the graph's output comes from a
    Softmax node (through Identity, Reshape, Flatten, Squeeze, Unsqueeze or Cast nodes), it is
    ``"probabilities"``; else the model is run once on :data:`PROBE_DIGITS` fixed probe
    images, and it is ``"probabilities"`` if every output row is non-negative and sums to 1
    (the test of :func:`~robust_mnist.classifier.check_probabilities`), ``"logits"``
    otherwise. The probe catches probabilities computed without a Softmax node, which a
    softmax would otherwise flatten silently; logits practically never pass it (every row
    of scores on four different images would have to lie in [0, 1] and sum to 1).

Before ONNX Runtime sees a file, the ``onnx`` package reads it without its external data and
everything is checked: it parses (not truncated or corrupt); every tensor stored as external
data names a file inside the model file's own folder (no absolute paths, no ``..``, no
symbolic link that leads out); every node is a standard ONNX operator (domains ``""``,
``"ai.onnx"``, ``"ai.onnx.ml"``, or a function the file itself defines): custom operators
need native code, which this tool never loads; ``onnx.checker`` accepts it; it has one float
image input that fits 28x28 digits and one output of 10 scores. ONNX files hold no Python
code, so no ``--trust-model`` is needed. Each failure is one line naming the file (a
:class:`~robust_mnist.errors.ModelError`).

Determinism: ONNX Runtime runs on the CPU with :data:`ONNX_THREADS` intra-op threads (a fixed
number, not the machine's core count, so that a worker on a machine of another size computes
the same bits), one inter-op thread and sequential execution, in blocks of
:data:`ONNX_BATCH` images aligned to each call (the runner's fixed model blocks), so tables
stay bit-identical across executors, chunk sizes and resumes.

``onnx`` and ``onnxruntime`` are imported inside the functions that need them, so that
importing this module (and ``robust-mnist --help``) stays fast; import-linter checks that no
other module of the package imports them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from .classifier import check_probabilities
from .errors import InvalidArgumentError, ModelError
from .images import check_images

logger = logging.getLogger(__name__)

#: Input layouts: each name and the shape of one digit in it (after the batch dimension).
LAYOUTS: dict[str, tuple[int, ...]] = {
    "nhwc": (28, 28, 1),
    "nchw": (1, 28, 28),
    "nhw": (28, 28),
    "flat": (784,),
}
#: Named input scales (or an explicit ``(mean, std)`` on [0, 1] pixels).
SCALES = ("unit", "255", "mnist")
#: What the model's output holds.
OUTPUTS = ("probabilities", "logits")
#: torchvision's MNIST normalisation (``transforms.Normalize((0.1307,), (0.3081,))``).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
#: Operator domains accepted: the standard ONNX operators and ONNX-ML.
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
#: ONNX Runtime's intra-op threads: fixed, whatever the machine, so results never depend on
#: where a model runs, and 1, so that no model can give thread-dependent bits (one thread
#: never splits a sum). Measured on the article CNN's export on a 2-core machine: 1, 2 and 4
#: threads gave bit-identical probabilities (10,000 clean and 10,000 noisy test digits, blocks
#: of 1 to 4,096); alone, 2 threads ran from 0.7x to 1.35x the speed of 1 depending on the
#: machine's load (4 threads about 0.6x); in the quick study (serial executor, whose other
#: thread perturbs the next cells) 1 thread gave 8,700-9,000 digits/s against 6,600-8,200
#: with 2; and process or Dask workers, one per core, would only compete for the cores.
ONNX_THREADS = 1
#: Images per ``session.run`` call (a model with a fixed batch size runs in blocks of it).
ONNX_BATCH = 1024
#: Probe images run once at load time (what the output holds, and that the model runs).
PROBE_DIGITS = 4
#: Nodes that pass a Softmax's probabilities through unchanged (up to shape and type).
_PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast")
_INPUT_DTYPES = ("float16", "float32", "float64")
_CONTRACT_KEYS = ("input_layout", "input_scale", "output")
_EXPECTED_INPUTS = "(N, 28, 28, 1) nhwc, (N, 1, 28, 28) nchw, (N, 28, 28) nhw or (N, 784) flat"


# --------------------------------------------------------------------------- the contract


@dataclass(frozen=True)
class ModelContract:
    """How a model file wants its digits and what it returns (None: detect, see the module).

    Attributes
    ----------
    input_layout : {"nhwc", "nchw", "nhw", "flat"} or None
    input_scale : {"unit", "255", "mnist"}, (mean, std) tuple of float, or None
        ``(mean, std)``: the model sees ``(x - mean) / std`` for pixels ``x`` in [0, 1].
    output : {"probabilities", "logits"} or None

    Raises
    ------
    InvalidArgumentError
        A value outside the allowed ones, named with them.
    """

    input_layout: str | None = None
    input_scale: str | tuple[float, float] | None = None
    output: str | None = None

    def __post_init__(self) -> None:
        if self.input_layout is not None and self.input_layout not in LAYOUTS:
            raise InvalidArgumentError(
                f"input_layout must be one of {', '.join(LAYOUTS)}; got {self.input_layout!r}"
            )
        object.__setattr__(self, "input_scale", _check_scale(self.input_scale))
        if self.output is not None and self.output not in OUTPUTS:
            raise InvalidArgumentError(f"output must be one of {', '.join(OUTPUTS)}; got {self.output!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "ModelContract":
        """A contract from ``{"input_layout": ..., "input_scale": ..., "output": ...}`` (keys
        optional; None values mean "detect"; a scale table is ``{"mean": m, "std": s}``)."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(_CONTRACT_KEYS))
        if unknown:
            raise InvalidArgumentError(f"unknown model contract keys {unknown}; allowed: {', '.join(_CONTRACT_KEYS)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The declared values only, as a study file writes them (what a spec hash sees)."""
        values: dict[str, Any] = {}
        if self.input_layout is not None:
            values["input_layout"] = self.input_layout
        if isinstance(self.input_scale, tuple):
            values["input_scale"] = {"mean": self.input_scale[0], "std": self.input_scale[1]}
        elif self.input_scale is not None:
            values["input_scale"] = self.input_scale
        if self.output is not None:
            values["output"] = self.output
        return values


def _check_scale(scale: Any) -> str | tuple[float, float] | None:
    if scale is None or (isinstance(scale, str) and scale in SCALES):
        return scale
    pair: Any = None
    if isinstance(scale, Mapping) and set(scale) == {"mean", "std"}:
        pair = (scale["mean"], scale["std"])
    elif isinstance(scale, (tuple, list)) and len(scale) == 2:
        pair = tuple(scale)
    if pair is not None and all(_is_number(v) for v in pair) and pair[1] > 0:
        return float(pair[0]), float(pair[1])
    raise InvalidArgumentError(
        f"input_scale must be one of {', '.join(repr(s) for s in SCALES)} or a table "
        f"{{mean = M, std = S}} (on [0, 1] pixels, std > 0); got {scale!r}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def as_contract(contract: "ModelContract | Mapping[str, Any] | None") -> ModelContract:
    """``contract`` as a :class:`ModelContract` (a mapping goes through :meth:`ModelContract.from_dict`)."""
    if isinstance(contract, ModelContract):
        return contract
    return ModelContract.from_dict(contract)


# --------------------------------------------------------------------------- the classifier


class OnnxClassifier:
    """An ONNX model file behind the :class:`~robust_mnist.classifier.Classifier` protocol.

    Build it with :func:`load_onnx_classifier`, which checks the file first.

    Attributes
    ----------
    path : Path
    name : str
        What errors call the model (its file).
    contract : ModelContract
        Resolved: every field set, declared or detected.
    detected : tuple of str
        The contract keys that were not declared (detected, or ``input_scale``'s default).
    """

    def __init__(self, path: Path, session: Any, graph: "_GraphFacts", contract: ModelContract) -> None:
        self.path = path
        self.name = str(path)
        self._session = session
        self._graph = graph
        self._layout = _resolve_layout(self.name, graph, contract.input_layout)
        self._scale = contract.input_scale or "unit"
        probe = self._scores(_probe_images())
        output = contract.output or (
            "probabilities" if graph.softmax_output or _are_probabilities(probe) else "logits"
        )
        self.contract = ModelContract(self._layout, self._scale, output)
        declared = (contract.input_layout, contract.input_scale, contract.output)
        self.detected = tuple(key for key, value in zip(_CONTRACT_KEYS, declared) if value is None)
        self._convert(probe)  # a model declared (or seen) to give probabilities must give them

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        images : (N, 28, 28) ndarray of float32 in [0, 1]

        Returns
        -------
        (N, 10) ndarray of float32
        """
        images = check_images(images)
        if not len(images):
            return np.zeros((0, 10), np.float32)
        return self._convert(self._scores(images))

    def describe(self) -> dict[str, Any]:
        """What run.json records: the framework, ONNX Runtime's version, the contract."""
        import onnxruntime  # noqa: PLC0415  (heavy, optional: already loaded by the session)

        return {
            "framework": "onnx",
            "onnxruntime": onnxruntime.__version__,
            "contract": self.contract.to_dict(),
            "detected": list(self.detected),
            "input": f"{self._graph.input_name} {_shape_text(self._graph.input_shape)}",
            "threads": ONNX_THREADS,
        }

    def _model_input(self, images: np.ndarray) -> np.ndarray:
        scale = self._scale
        if scale == "255":
            values = images * np.float32(255.0)
        elif scale == "unit":
            values = images
        else:
            mean, std = (MNIST_MEAN, MNIST_STD) if scale == "mnist" else scale
            values = (images - np.float32(mean)) / np.float32(std)
        shape = (len(images), *LAYOUTS[self._layout])
        return np.ascontiguousarray(values.reshape(shape), dtype=self._graph.input_dtype)

    def _scores(self, images: np.ndarray) -> np.ndarray:
        """The model's raw output for ``images`` (N, 28, 28), as float64 (N, 10)."""
        inputs = self._model_input(images)
        block = self._graph.batch or ONNX_BATCH
        chunks = []
        for start in range(0, len(inputs), block):
            part = inputs[start : start + block]
            n = len(part)
            if self._graph.batch and n < block:  # a fixed batch size: pad the last block
                part = np.concatenate([part, np.zeros((block - n, *part.shape[1:]), part.dtype)])
            try:
                (scores,) = self._session.run([self._graph.output_name], {self._graph.input_name: part})
            except Exception as error:  # ONNX Runtime's own exception types
                raise ModelError(
                    f"{self.name}: ONNX Runtime failed on {_shape_text(part.shape)} "
                    f"{self._layout} inputs ({_first_line(error)})"
                ) from None
            scores = np.asarray(scores)
            if scores.ndim != 2 or scores.shape != (len(part), 10):
                raise ModelError(
                    f"{self.name}: output {self._graph.output_name!r} has shape {scores.shape} for "
                    f"{len(part)} digits; expected ({len(part)}, 10): one score per digit 0-9"
                )
            chunks.append(scores[:n])
        return np.concatenate(chunks).astype(np.float64)

    def _convert(self, scores: np.ndarray) -> np.ndarray:
        if not np.isfinite(scores).all():
            raise ModelError(f"{self.name}: output holds NaN or infinite values")
        if self.contract.output == "logits":
            shifted = scores - scores.max(axis=1, keepdims=True)
            weights = np.exp(shifted)
            probabilities = weights / weights.sum(axis=1, keepdims=True)
        elif not _are_probabilities(scores):
            raise ModelError(
                f"{self.name}: output is not probabilities (rows must be >= 0 and sum to 1); if "
                "the model returns logits, declare output = \"logits\" (--output logits)"
            )
        else:
            probabilities = scores
        return check_probabilities(probabilities.astype(np.float32), len(scores), source=self.name)


def load_onnx_classifier(
    path: str | os.PathLike, contract: ModelContract | Mapping[str, Any] | None = None
) -> OnnxClassifier:
    """Check an ONNX model file (see the module docstring), then load it into ONNX Runtime.

    Parameters
    ----------
    path : path-like
        A ``.onnx`` file; its external data, if any, must sit in its folder.
    contract : ModelContract or mapping, optional
        What the study file or the command line declares; the rest is detected.

    Returns
    -------
    OnnxClassifier

    Raises
    ------
    ModelError
        One line naming the file: missing, empty, truncated or corrupt, external data
        outside its folder, a custom operator, rejected by ``onnx.checker``, an input or
        output that cannot fit (naming its shape and what was expected), an ambiguous layout
        that needs declaring, or a model that fails on (or misreports) the probe digits.
    InvalidArgumentError
        A contract value outside the allowed ones.
    """
    path = Path(path)
    contract = as_contract(contract)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: model file is empty (0 bytes)")
    model = _read_checked(path)
    graph = _graph_facts(path, model)
    del model
    return OnnxClassifier(path, _session(path), graph, contract)


# --------------------------------------------------------------------------- checks


def _read_checked(path: Path) -> Any:
    """The file's ModelProto (without external data), after every check but the shapes."""
    import onnx  # noqa: PLC0415  (heavy, optional: loaded only to read an ONNX file)

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends: all mean "unusable"
        raise ModelError(f"{path}: cannot read ONNX model: truncated or not an ONNX file ({_first_line(error)})") from None
    if not model.HasField("graph") or not model.graph.output:
        raise ModelError(f"{path}: cannot read ONNX model: truncated or not an ONNX file (no graph)")
    _check_domains(path, model)
    _check_external_data(path, model)
    try:
        # Given the path (not the proto), the checker looks for external data beside the file.
        onnx.checker.check_model(str(path))
    except Exception as error:  # onnx.checker.ValidationError, or a parse error
        raise ModelError(f"{path}: not a valid ONNX model ({_first_line(error)})") from None
    return model


def _check_domains(path: Path, model: Any) -> None:
    local_functions = {(function.domain, function.name) for function in model.functions}
    for node in _nodes(model):
        if node.domain in STANDARD_DOMAINS or (node.domain, node.op_type) in local_functions:
            continue
        raise ModelError(
            f"{path}: node {node.name or node.op_type!r} uses the custom operator "
            f"{node.domain}.{node.op_type}; only standard ONNX operators (domains "
            f"{', '.join(repr(d) for d in STANDARD_DOMAINS)}) are accepted: custom operators "
            "need native code, which robust-mnist does not load"
        )


def _check_external_data(path: Path, model: Any) -> None:
    import onnx  # noqa: PLC0415  (heavy, optional: loaded only to read an ONNX file)

    folder = path.absolute().parent.resolve()
    for tensor in _tensors(model):
        entries = {entry.key: entry.value for entry in tensor.external_data}
        if tensor.data_location != onnx.TensorProto.EXTERNAL and "location" not in entries:
            continue
        location = entries.get("location", "")
        what = f"tensor {tensor.name!r} stores its data in external file {location!r}"
        if not location or "\0" in location:
            raise ModelError(f"{path}: tensor {tensor.name!r} stores its data externally without a valid file name")
        if os.path.isabs(location) or PureWindowsPath(location).is_absolute() or location.startswith("\\"):
            raise ModelError(f"{path}: {what}, an absolute path; external data must sit in the model file's folder {folder}")
        target = (folder / location).resolve()
        if not target.is_relative_to(folder):
            raise ModelError(
                f"{path}: {what}, which leads outside the model file's folder {folder} "
                f"(to {target}); refused: external data must sit in that folder"
            )
        if not target.is_file():
            raise ModelError(f"{path}: {what}, not found in {folder}")


def _graphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph of its nodes (If, Loop, Scan bodies), recursively."""
    yield graph
    for node in graph.node:
        yield from _subgraphs(node)


def _subgraphs(node: Any) -> Iterator[Any]:
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield from _graphs(attribute.g)
        for graph in attribute.graphs:
            yield from _graphs(graph)


def _nodes(model: Any) -> Iterator[Any]:
    """Every node of the model: its graph's, its subgraphs', its local functions'."""
    for graph in _graphs(model.graph):
        yield from graph.node
    for function in model.functions:
        for node in function.node:
            yield node
            for graph in _subgraphs(node):
                yield from graph.node


def _tensors(model: Any) -> Iterator[Any]:
    """Every tensor the model stores: initializers (dense and sparse) and attribute tensors."""
    graphs = list(_graphs(model.graph))
    graphs += [graph for function in model.functions for node in function.node for graph in _subgraphs(node)]
    sparse: list[Any] = []
    for graph in graphs:
        yield from graph.initializer
        sparse.extend(graph.sparse_initializer)
    for node in _nodes(model):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                sparse.append(attribute.sparse_tensor)
            sparse.extend(attribute.sparse_tensors)
    for tensor in sparse:
        yield tensor.values
        yield tensor.indices


@dataclass(frozen=True)
class _GraphFacts:
    """What the graph says about its input and output."""

    input_name: str
    input_shape: tuple[int | str | None, ...] | None
    input_dtype: np.dtype
    output_name: str
    softmax_output: bool

    @property
    def batch(self) -> int | None:
        """A fixed batch size, if the graph has one."""
        if self.input_shape and isinstance(self.input_shape[0], int):
            return self.input_shape[0]
        return None


def _graph_facts(path: Path, model: Any) -> _GraphFacts:
    """The one image input and the one output, checked against 28x28 digits and 10 classes."""
    import onnx  # noqa: PLC0415  (heavy, optional: loaded only to read an ONNX file)

    graph = model.graph
    stored = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in stored]
    if len(inputs) != 1:
        names = ", ".join(repr(value.name) for value in inputs) or "none"
        raise ModelError(f"{path}: the model has {len(inputs)} inputs ({names}); expected one image input {_EXPECTED_INPUTS}")
    if len(graph.output) != 1:
        names = ", ".join(repr(value.name) for value in graph.output)
        raise ModelError(f"{path}: the model has {len(graph.output)} outputs ({names}); expected one (N, 10) output")
    (source,), target = inputs, graph.output[0]
    input_shape, input_type = _tensor_type(path, source, "input")
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(input_type)) if input_type else None
    if dtype is None or dtype.name not in _INPUT_DTYPES:
        raise ModelError(
            f"{path}: input {source.name!r} holds {onnx.TensorProto.DataType.Name(input_type)} "
            f"values; expected floating-point images ({', '.join(_INPUT_DTYPES)})"
        )
    if input_shape is not None and len(input_shape) not in {1 + len(shape) for shape in LAYOUTS.values()}:
        raise ModelError(
            f"{path}: input {source.name!r} has shape {_shape_text(input_shape)} (rank "
            f"{len(input_shape)}); expected {_EXPECTED_INPUTS}"
        )
    output_shape, _ = _tensor_type(path, target, "output")
    if output_shape is not None and (
        len(output_shape) != 2 or (isinstance(output_shape[1], int) and output_shape[1] != 10)
    ):
        raise ModelError(
            f"{path}: output {target.name!r} has shape {_shape_text(output_shape)}; expected "
            "(N, 10): one score per digit 0-9"
        )
    return _GraphFacts(source.name, input_shape, dtype, target.name, _comes_from_softmax(graph, target.name))


def _tensor_type(path: Path, value: Any, what: str) -> tuple[tuple[int | str | None, ...] | None, int]:
    """``(shape or None when unknown, element type)`` of a graph input or output."""
    if not value.type.HasField("tensor_type"):
        raise ModelError(f"{path}: {what} {value.name!r} is not a tensor; expected {_EXPECTED_INPUTS if what == 'input' else '(N, 10)'}")
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None, tensor_type.elem_type
    dims = tuple(
        dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)
        for dim in tensor_type.shape.dim
    )
    return dims, tensor_type.elem_type


def _comes_from_softmax(graph: Any, name: str) -> bool:
    producers = {output: node for node in graph.node for output in node.output}
    node = producers.get(name)
    while node is not None and node.op_type in _PASS_THROUGH and node.domain in ("", "ai.onnx") and node.input:
        node = producers.get(node.input[0])
    return node is not None and node.op_type == "Softmax" and node.domain in ("", "ai.onnx")


def _resolve_layout(name: str, graph: _GraphFacts, declared: str | None) -> str:
    """The declared layout if the input shape admits it, else the one
    layout that fits the shape; a one-line error otherwise."""
    shape = graph.input_shape
    fitting = [layout for layout in LAYOUTS if shape is None or _fits(shape, LAYOUTS[layout])]
    where = f"{name}: input {graph.input_name!r} has shape {_shape_text(shape)}"
    if declared is not None:
        if declared not in fitting:
            raise ModelError(f"{where}, which does not fit input_layout {declared!r} {_shape_text(('N', *LAYOUTS[declared]))}")
        return declared
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        raise ModelError(f"{where}; expected {_EXPECTED_INPUTS}")
    raise ModelError(f"{where}, which could be {' or '.join(fitting)}: declare input_layout (--input-layout)")


def _fits(shape: tuple[int | str | None, ...], digit: tuple[int, ...]) -> bool:
    if len(shape) != 1 + len(digit):
        return False
    return all(not isinstance(have, int) or have == want for have, want in zip(shape[1:], digit))


def _shape_text(shape: tuple[Any, ...] | None) -> str:
    if shape is None:
        return "(unknown)"
    dims = ["?" if dim is None else str(dim) for dim in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


# --------------------------------------------------------------------------- running


def _session(path: Path) -> Any:
    """An ONNX Runtime session on the CPU with fixed threads and sequential execution."""
    import onnxruntime  # noqa: PLC0415  (heavy, optional: loaded only to run an ONNX model)

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = ONNX_THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.use_deterministic_compute = True
    # ONNX Runtime's own warnings go straight to stderr; errors reach Python as exceptions.
    options.log_severity_level = 0 if logger.isEnabledFor(logging.DEBUG) else 3
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime's own exception types
        raise ModelError(f"{path}: ONNX Runtime cannot load the model ({_first_line(error)})") from None


def _probe_images() -> np.ndarray:
    """:data:`PROBE_DIGITS` fixed images in [0, 1]: blank, a bar, a ring and fixed noise."""
    rows, columns = np.mgrid[0:28, 0:28]
    blank = np.zeros((28, 28), np.float32)
    bar = ((columns >= 12) & (columns < 16) & (rows >= 4) & (rows < 24)).astype(np.float32)
    radius = np.hypot(rows - 13.5, columns - 13.5)
    ring = ((radius > 6) & (radius < 9)).astype(np.float32)
    noise = np.random.default_rng(0).random((28, 28), dtype=np.float32)
    return np.stack([blank, bar, ring, noise])[:PROBE_DIGITS]


def _are_probabilities(scores: np.ndarray) -> bool:
    """The test of :func:`~robust_mnist.classifier.check_probabilities`: finite, >= 0, rows sum to 1."""
    return bool(
        np.isfinite(scores).all()
        and scores.min() >= -1e-6
        and np.abs(scores.sum(axis=1) - 1).max() <= 1e-3
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

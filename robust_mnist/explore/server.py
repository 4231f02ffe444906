"""The explorer's web server: the page, its assets and JSON endpoints, on Starlette and Uvicorn.

:func:`create_app` builds the Starlette application over an :class:`~.session.ExploreSession`;
:class:`Explorer` binds it to a socket (127.0.0.1 by default) and runs Uvicorn, in the
foreground (:meth:`Explorer.run`, the command) or in a thread (:meth:`Explorer.start`, tests
and the bench); :func:`serve` is the one call of ``robust-mnist explore``. Safety: every
response carries a strict Content-Security-Policy (nothing loads but this server's own script
and style, and ``data:`` images; no inline script), requests whose Host header is not the
served address are refused (DNS rebinding), as are cross-origin POSTs; bodies are capped
(:data:`MAX_UPLOAD`, :data:`MAX_JSON`) while they stream in; malformed JSON, pictures, unknown
families and out-of-range magnitudes get a 4xx with a one-line message, and an unexpected
failure a 500 with one line (its traceback goes to the log) — the server keeps answering.
Each request is logged on stderr in one line. Computations run in Starlette's thread pool.

Endpoints: ``GET /`` the page; ``GET /static/explore.{js,css}``; ``GET /api/config``;
``POST /api/digit/picture`` (the raw bytes of a PNG/JPEG: an upload or the canvas);
``GET /api/digit/mnist?index=N``; ``GET /api/digit/surprise``; ``POST /api/predict``
``{digit, settings: {family: magnitude}, target, label}``; ``POST /api/sweep``
``{digit, label, target}``; ``POST /api/save`` ``{digit, label}`` (the server picks the path).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InvalidArgumentError, RobustMnistError
from .session import DEFAULT_DIGITS_DIR, ExploreSession, check_digit, load_models
from .sweep import sweep_digit

logger = logging.getLogger("robust_mnist.explore")

#: Largest picture upload, in bytes (a phone photo fits; the picture is reduced anyway).
MAX_UPLOAD = 10 * 1024 * 1024
#: Largest JSON request (a digit is 784 numbers: about 16 kB at most).
MAX_JSON = 256 * 1024
#: The page's Content-Security-Policy: the report's "nothing but what the page ships", plus
#: fetches to this server (the endpoints) and its own script and style files.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: The files under static/ the server hands out, with their media types.
ASSETS = {
    "explore.js": "text/javascript; charset=utf-8",
    "explore.css": "text/css; charset=utf-8",
}
DEFAULT_PORT = 8765


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def one_line(message: str) -> str:
    return " ".join(str(message).split()) or "bad request"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(413, f"request body too large (limit {limit} bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body too large (limit {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, allowed: Sequence[str]) -> dict[str, Any]:
    """A JSON object with only the ``allowed`` keys."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise RequestError(415, "send JSON with Content-Type: application/json")
    body = await read_body(request, MAX_JSON)
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"malformed JSON: {error}") from None
    if not isinstance(value, dict):
        raise RequestError(400, "expected a JSON object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r}; allowed: {', '.join(allowed)}")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _optional_class(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise RequestError(400, f"{what} must be a digit 0-9 or null; got {value!r}")
    return value


def _settings(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(400, "settings must be an object {family: magnitude}")
    for name, magnitude in value.items():
        if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)):
            raise RequestError(400, f"magnitude of {name!r} must be a number; got {magnitude!r}")
    return {str(name): float(magnitude) for name, magnitude in value.items()}


def _digit_payload(digit: np.ndarray, label: int | None, source: str) -> dict[str, Any]:
    # Exact float32 values: the page sends them back, and they must stay the same digit.
    return {"digit": [float(v) for v in digit.ravel()], "label": label, "source": source}


def create_app(session: ExploreSession, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> Starlette:
    """The explorer's Starlette application, answering only to ``host:port`` (see the module)."""
    allowed_hosts = _allowed_hosts(host, port)
    allowed_origins = {f"http://{name}" for name in allowed_hosts}
    static = resources.files("robust_mnist.explore") / "static"
    page = (static / "explore.html").read_bytes()
    assets = {name: (static / name).read_bytes() for name in ASSETS}

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            raise RequestError(404, f"no such file: /static/{name}")
        return Response(assets[name], media_type=ASSETS[name])

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # the browser asks; there is none, and that is fine

    async def config(request: Request) -> Response:
        return JSONResponse(session.describe())

    async def picture(request: Request) -> Response:
        data = await read_body(request, MAX_UPLOAD)
        digit = await run_in_threadpool(session.digit_from_picture, data, "picture")
        return JSONResponse(_digit_payload(digit, None, "your picture"))

    async def mnist(request: Request) -> Response:
        raw = request.query_params.get("index", "")
        if not raw.strip().lstrip("-").isdigit():
            raise RequestError(400, f"index must be a whole number; got {raw!r}")
        digit, label = await run_in_threadpool(session.mnist_digit, int(raw))
        return JSONResponse(_digit_payload(digit, label, f"MNIST test digit {int(raw)}"))

    async def surprise(request: Request) -> Response:
        if not session.describe()["surprise"]:
            raise RequestError(404, "no run directory: start the explorer with --run RUN_DIR")
        digit, label, where = await run_in_threadpool(session.surprise)
        return JSONResponse(_digit_payload(digit, label, where))

    async def predict(request: Request) -> Response:
        body = await read_json(request, ("digit", "settings", "target", "label"))
        digit = check_digit(body.get("digit"))
        settings = _settings(body.get("settings"))
        target = _optional_class(body.get("target"), "target")
        label = _optional_class(body.get("label"), "label")
        started = time.perf_counter()
        outcome = await run_in_threadpool(session.explore, digit, settings, target, label)
        return JSONResponse({
            "image": [round(float(v), 4) for v in outcome.image.ravel()],
            "models": [
                {"name": m.name, "probabilities": [float(p) for p in probabilities]}
                for m, probabilities in zip(session.models, outcome.probabilities)
            ],
            "settings": settings, "steps": outcome.steps, "target": target,
            "milliseconds": round(1000 * (time.perf_counter() - started), 2),
        })

    async def sweep(request: Request) -> Response:
        body = await read_json(request, ("digit", "label", "target"))
        digit = check_digit(body.get("digit"))
        label = _optional_class(body.get("label"), "label")
        target = _optional_class(body.get("target"), "target")
        started = time.perf_counter()
        result = await run_in_threadpool(sweep_digit, session, digit, label, target)
        result["milliseconds"] = round(1000 * (time.perf_counter() - started), 1)
        return JSONResponse(result)

    async def save(request: Request) -> Response:
        body = await read_json(request, ("digit", "label"))
        digit = check_digit(body.get("digit"))
        label = _optional_class(body.get("label"), "label")
        if label is None:
            raise RequestError(400, "give the digit's label (0-9) to save it")
        path = await run_in_threadpool(session.save_digit, digit, label)
        return JSONResponse({"file": path.name, "folder": str(path.parent)})

    routes = [
        Route("/", index), Route("/static/{name}", asset), Route("/favicon.ico", no_icon), Route("/api/config", config),
        Route("/api/digit/picture", picture, methods=["POST"]),
        Route("/api/digit/mnist", mnist), Route("/api/digit/surprise", surprise),
        Route("/api/predict", predict, methods=["POST"]), Route("/api/sweep", sweep, methods=["POST"]),
        Route("/api/save", save, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={
        RequestError: lambda request, error: _error(error.status, str(error)),
        RobustMnistError: lambda request, error: _error(400, str(error)),
        ValueError: lambda request, error: _error(400, str(error)),
    })
    return _Guard(app, allowed_hosts, allowed_origins)


class _Guard:
    """ASGI middleware: Host and Origin checks, error messages, security headers, the log line."""

    def __init__(self, app: Starlette, hosts: set[str], origins: set[str]) -> None:
        self.app, self.hosts, self.origins = app, hosts, origins

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        status = {"code": 500, "started": False}

        async def send_secured(message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                present = {k for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *[(k, v) for k, v in extra if k not in present]]}
            await send(message)

        host = headers.get("host", "")
        origin = headers.get("origin")
        try:
            if host.lower() not in self.hosts:
                raise RequestError(403, f"Host {host!r} is not this server (expected {sorted(self.hosts)[0]})")
            if scope["method"] not in ("GET", "HEAD") and origin is not None and origin.lower() not in self.origins:
                raise RequestError(403, f"cross-origin request from {origin!r} refused")
            await self.app(scope, receive, send_secured)
        except RequestError as error:
            await _error(error.status, str(error))(scope, receive, send_secured)
        except Exception as error:  # a bug: one line to the page, the traceback to the log
            logger.exception("%s %s failed", scope["method"], scope["path"])
            if not status["started"]:
                await _error(500, f"internal error ({type(error).__name__}); see the server's log")(
                    scope, receive, send_secured)
        finally:
            client = scope.get("client") or ("-", 0)
            logger.info('%s "%s %s" %d %.1f ms', client[0], scope["method"], scope["path"],
                        status["code"], 1000 * (time.perf_counter() - started))


def _allowed_hosts(host: str, port: int) -> set[str]:
    """The Host headers this server answers to: its address, and localhost's names on loopback."""
    names = {host.lower(), f"[{host}]" if ":" in host else host.lower()}
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    if loopback:
        names |= {"127.0.0.1", "localhost", "[::1]"}
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= names
    return hosts


class Explorer:
    """The explorer bound to a socket: :meth:`run` in the foreground, :meth:`start` in a thread.

    Binding happens here (``port=0`` picks a free port), so :attr:`url` is known before
    Uvicorn starts, and a port in use is one clear error.
    """

    def __init__(self, session: ExploreSession, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        family_ = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family_, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it, a response's headers and body leave in
        # two segments, and on a kept-alive connection the second waits ~40 ms for the
        # browser's delayed ACK (Nagle), ten times the slider's computing time.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.socket.bind((host, port))
        except OSError as error:
            self.socket.close()
            raise InvalidArgumentError(
                f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port") from None
        self.socket.listen(128)
        self.host, self.port = host, self.socket.getsockname()[1]
        self.session = session
        self.app = create_app(session, host, self.port)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=30,
        ))
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self) -> "Explorer":
        """Serve from a daemon thread; returns once the server accepts requests."""
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the explorer's server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()


def serve(
    models: Sequence[str | os.PathLike] = (),
    archs: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    digits_dir: str | os.PathLike = DEFAULT_DIGITS_DIR,
    run_dir: str | os.PathLike | None = None,
    engine: str = "keras",
    trust_model: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Load the models once, bind, call ``on_ready(url)``, and serve until interrupted.

    Raises
    ------
    RobustMnistError
        One line: a model that cannot be loaded, a bad run directory, a port in use.
    """
    if run_dir is not None and not Path(run_dir).is_dir():
        raise InvalidArgumentError(f"{run_dir}: no such run directory")
    logger.info("loading %d model(s)", max(1, len(models) + len(archs)))
    session = ExploreSession(
        load_models(models, archs, engine=engine, trust_model=trust_model),
        digits_dir=digits_dir, run_dir=run_dir,
    )
    explorer = Explorer(session, host, port)
    logger.info("warming up every family and model")
    session.warm_up()
    if on_ready is not None:
        on_ready(explorer.url)
    explorer.run()

"""``robust-mnist explore``: the session's computations and the server's endpoints, with numpy models.

The endpoints are exercised through Starlette's TestClient (and, for concurrency, a real Uvicorn
server on a free loopback port): predictions equal the library's ``perturb`` + ``predict_proba``
for the same digit and magnitude; every malformed request gets a 4xx with a one-line message
and the server keeps answering; the sweep's critical magnitudes are the study's; saving writes
``<label>_<n>.png`` into the configured folder only.
"""

from __future__ import annotations

import io
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

import robust_mnist
from robust_mnist.classifier import TemplateClassifier
from robust_mnist.cli import main
from robust_mnist.data import load_mnist, to_float
from robust_mnist.explore import server as explore_server
from robust_mnist.explore.server import CONTENT_SECURITY_POLICY, MAX_UPLOAD, Explorer, create_app
from robust_mnist.explore.session import ORDER, ExploreSession, slider_families
from robust_mnist.explore.sweep import sweep_grid
from robust_mnist.perturbations import available
from robust_mnist.preprocess import load_digit
from study_fakes import template_classifier

HOST, PORT = "127.0.0.1", 8765
BASE = f"http://{HOST}:{PORT}"


def two_models():
    sharp = TemplateClassifier(template_classifier().templates, sharpness=600.0)
    return [("template", template_classifier()), ("template-sharp", sharp)]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return ExploreSession(two_models(), digits_dir=tmp_path_factory.mktemp("explore") / "own_digits")


@pytest.fixture(scope="module")
def client(session):
    with TestClient(create_app(session, HOST, PORT), base_url=BASE) as test_client:
        yield test_client


def mnist_digit(index: int) -> tuple[np.ndarray, int]:
    mnist = load_mnist()
    return to_float(mnist.x_test[index : index + 1])[0], int(mnist.y_test[index])


def library_probabilities(session, images: np.ndarray) -> list[np.ndarray]:
    return [m.classifier.predict_proba(images)[0] for m in session.models]


def test_the_page_and_its_assets_carry_the_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/static/explore.js"' in page.text and "<script>" not in page.text
    for name in ("explore.js", "explore.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-security-policy"]
        # No external asset: the only URL in the script is SVG's namespace name.
        text = asset.text.replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text and "https://" not in text
    assert client.get("/static/../session.py").status_code == 404
    assert client.get("/static/explore.html").status_code == 404


def test_config_lists_one_slider_per_family_in_the_documented_order(client):
    config = client.get("/api/config").json()
    names = [slider["name"] for slider in config["sliders"]]
    assert sorted(names) == sorted(set(available()) - {"compose"})
    assert names[: len(ORDER)] == [name for name in ORDER if name in names]
    rotate = next(s for s in config["sliders"] if s["name"] == "rotate")
    assert rotate["unit"] == "degrees" and rotate["min"] < 0 < rotate["max"]
    assert config["models"] == ["template", "template-sharp"] and config["surprise"] is False


def test_mnist_digit_and_prediction_equal_the_library(client, session):
    digit, label = mnist_digit(3)
    payload = client.get("/api/digit/mnist", params={"index": 3}).json()
    assert payload["label"] == label
    assert np.array_equal(np.array(payload["digit"], np.float32).reshape(28, 28), digit)
    reply = client.post("/api/predict", json={"digit": payload["digit"], "settings": {}}).json()
    for model, expected in zip(reply["models"], library_probabilities(session, digit[None])):
        assert sum(model["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert np.array_equal(np.array(model["probabilities"], np.float32), expected)


@pytest.mark.parametrize("family, magnitude, options", [
    ("rotate", 20.0, {}), ("thin", 1.0, {}), ("gaussian_noise", 0.3, {}), ("morph", 0.6, {"target": 7}),
])
def test_one_slider_is_the_library_perturb_and_predict(client, session, family, magnitude, options):
    digit, label = mnist_digit(0)
    body = {"digit": digit.ravel().tolist(), "settings": {family: magnitude}, "label": label,
            "target": options.get("target")}
    reply = client.post("/api/predict", json=body).json()
    perturbed, _ = robust_mnist.perturb(family, digit[None], magnitude, seed=session.seed,
                                        labels=np.array([label]), **options)
    assert np.allclose(np.array(reply["image"]).reshape(28, 28), perturbed[0], atol=1e-4)
    for model, expected in zip(reply["models"], library_probabilities(session, perturbed)):
        assert sum(model["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert np.array_equal(np.array(model["probabilities"], np.float32), expected)


def test_sliders_compose_in_the_fixed_order_through_compose(client, session):
    digit, _ = mnist_digit(1)
    settings = {"gaussian_noise": 0.1, "rotate": -15.0, "thicken": 1.0}  # given out of order
    reply = client.post("/api/predict", json={"digit": digit.ravel().tolist(), "settings": settings}).json()
    steps = [{"family": "thicken", "magnitude": 1.0}, {"family": "rotate", "magnitude": -15.0},
             {"family": "gaussian_noise", "magnitude": 0.1}]
    assert reply["steps"] == steps
    perturbed, _ = robust_mnist.perturb("compose", digit[None], 1.0, seed=session.seed, steps=steps)
    for model, expected in zip(reply["models"], library_probabilities(session, perturbed)):
        assert np.array_equal(np.array(model["probabilities"], np.float32), expected)


def test_an_uploaded_picture_is_preprocessed_exactly_as_predict_does(client, tmp_path):
    digit, _ = mnist_digit(5)
    picture = Image.fromarray(255 - np.round(digit * 255).astype(np.uint8)).resize((140, 140), Image.Resampling.BILINEAR)
    path = tmp_path / "five.png"
    picture.save(path)
    reply = client.post("/api/digit/picture", content=path.read_bytes(), headers={"Content-Type": "image/png"})
    assert reply.status_code == 200
    assert np.array_equal(np.array(reply.json()["digit"], np.float32).reshape(28, 28), load_digit(path))


def _png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


DIGIT = [0.0] * 784


@pytest.mark.parametrize("case, request_args, status", [
    ("oversize upload", dict(method="POST", url="/api/digit/picture", content=b"\x89PNG" + b"0" * MAX_UPLOAD,
                             headers={"Content-Type": "image/png"}), 413),
    ("non-image upload", dict(method="POST", url="/api/digit/picture", content=b"%PDF-1.4 not a picture",
                              headers={"Content-Type": "image/png"}), 400),
    ("blank picture", dict(method="POST", url="/api/digit/picture",
                           content=_png_bytes(np.full((50, 50), 255, np.uint8)), headers={"Content-Type": "image/png"}), 400),
    ("empty upload", dict(method="POST", url="/api/digit/picture", content=b""), 400),
    ("unknown family", dict(method="POST", url="/api/predict", json={"digit": DIGIT, "settings": {"teleport": 1}}), 400),
    ("compose as a slider", dict(method="POST", url="/api/predict", json={"digit": DIGIT, "settings": {"compose": 1}}), 400),
    ("out-of-range magnitude", dict(method="POST", url="/api/predict", json={"digit": DIGIT, "settings": {"rotate": 500}}), 400),
    ("magnitude not a number", dict(method="POST", url="/api/predict", json={"digit": DIGIT, "settings": {"rotate": "a"}}), 400),
    ("NaN magnitude", dict(method="POST", url="/api/predict", content=b'{"digit": [], "settings": {"rotate": NaN}}',
                           headers={"Content-Type": "application/json"}), 400),
    ("malformed JSON", dict(method="POST", url="/api/predict", content=b'{"digit": [0, 0,',
                            headers={"Content-Type": "application/json"}), 400),
    ("JSON not an object", dict(method="POST", url="/api/predict", json=[1, 2]), 400),
    ("not JSON at all", dict(method="POST", url="/api/predict", content=b"digit=1",
                             headers={"Content-Type": "application/x-www-form-urlencoded"}), 415),
    ("oversize JSON", dict(method="POST", url="/api/predict", json={"digit": DIGIT, "pad": "x" * 300_000}), 413),
    ("digit of the wrong size", dict(method="POST", url="/api/predict", json={"digit": [0.5] * 100}), 400),
    ("digit out of [0, 1]", dict(method="POST", url="/api/predict", json={"digit": [2.0] * 784}), 400),
    ("bad morph target", dict(method="POST", url="/api/predict", json={"digit": DIGIT, "target": 12}), 400),
    ("unknown field", dict(method="POST", url="/api/predict", json={"digit": DIGIT, "model": "x"}), 400),
    ("MNIST index out of range", dict(method="GET", url="/api/digit/mnist?index=10000"), 400),
    ("MNIST index not a number", dict(method="GET", url="/api/digit/mnist?index=abc"), 400),
    ("surprise without a run", dict(method="GET", url="/api/digit/surprise"), 404),
    ("foreign Host header", dict(method="GET", url="/api/config", headers={"Host": "attacker.example:8765"}), 403),
    ("foreign Host, right port", dict(method="GET", url="/", headers={"Host": "rebind.example.com:8765"}), 403),
    ("cross-origin POST", dict(method="POST", url="/api/save", json={"digit": DIGIT, "label": 3},
                               headers={"Origin": "http://evil.example"}), 403),
    ("unknown route", dict(method="GET", url="/api/nothing"), 404),
])
def test_bad_requests_get_a_4xx_with_one_line_and_the_server_answers_on(client, case, request_args, status):
    reply = client.request(**request_args)
    assert reply.status_code == status, (case, reply.text)
    message = reply.json()["error"] if reply.headers["content-type"].startswith("application/json") else reply.text
    assert message and "\n" not in message, case
    assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert client.get("/api/config").status_code == 200


def test_a_magnitude_message_names_the_family_and_its_range(client):
    reply = client.post("/api/predict", json={"digit": DIGIT, "settings": {"rotate": 500}})
    assert reply.json()["error"] == "rotate: magnitude 500 outside its range [-180, 180] degrees"
    reply = client.post("/api/predict", json={"digit": DIGIT, "settings": {"teleport": 1}})
    assert reply.json()["error"].startswith("unknown perturbation family 'teleport'; known: ")


def test_localhost_names_are_accepted_on_loopback(client):
    for host in ("127.0.0.1:8765", "localhost:8765"):
        assert client.get("/api/config", headers={"Host": host}).status_code == 200
    assert client.get("/api/config", headers={"Host": "127.0.0.1:9999"}).status_code == 403


def test_sweep_is_the_studys_per_digit_analysis(client, session):
    digit, label = mnist_digit(0)
    reply = client.post("/api/sweep", json={"digit": digit.ravel().tolist(), "label": label})
    assert reply.status_code == 200
    result = reply.json()
    assert [f["name"] for f in result["families"]] == slider_families()
    assert result["headline"] and result["flips_first"] in slider_families()
    rotate = next(f for f in result["families"] if f["name"] == "rotate")
    grid = sweep_grid("rotate")
    assert rotate["magnitudes"] == sorted([0.0, *grid])
    # Naively, with the library: the smallest |magnitude| whose prediction leaves the clean one.
    clean = [int(np.argmax(p)) for p in library_probabilities(session, digit[None])]
    for index, model in enumerate(session.models):
        flips = []
        for i, magnitude in enumerate(rotate["magnitudes"]):
            image, _ = robust_mnist.perturb("rotate", digit[None], magnitude, seed=session.seed)
            p = model.classifier.predict_proba(image)[0]
            assert rotate["p_true"][model.name][i] == pytest.approx(float(p[label]), abs=1e-5)
            if int(np.argmax(p)) != clean[index]:
                flips.append(magnitude)
        critical = rotate["critical"][model.name]
        if flips:
            smallest = min(flips, key=lambda m: (abs(m), m))
            assert critical["signed"] == smallest and critical["magnitude"] == abs(smallest)
        else:
            assert critical is None


def test_save_writes_into_the_configured_folder_only(client, session, tmp_path):
    digit, _ = mnist_digit(7)
    before = set(Path(tmp_path).iterdir())
    refused = client.post("/api/save", json={"digit": digit.ravel().tolist(), "label": 7, "path": str(tmp_path / "x.png")})
    assert refused.status_code == 400
    refused = client.post("/api/save", json={"digit": digit.ravel().tolist(), "label": "../../evil"})
    assert refused.status_code == 400
    assert set(Path(tmp_path).iterdir()) == before
    first = client.post("/api/save", json={"digit": digit.ravel().tolist(), "label": 7}).json()
    second = client.post("/api/save", json={"digit": digit.ravel().tolist(), "label": 7}).json()
    assert (first["file"], second["file"]) == ("7_1.png", "7_2.png")
    written = session.digits_dir / "7_1.png"
    assert Path(first["folder"]) == session.digits_dir and written.is_file()
    assert np.array_equal(np.asarray(Image.open(written)), np.round(digit * 255).astype(np.uint8))
    assert sorted(p.name for p in session.digits_dir.iterdir()) == ["7_1.png", "7_2.png"]


def test_surprise_draws_from_the_runs_unstable_digits(tmp_path):
    from test_report import make_run

    run = make_run(tmp_path / "run")
    session = ExploreSession(two_models(), digits_dir=tmp_path / "digits", run_dir=run)
    with TestClient(create_app(session, HOST, PORT), base_url=BASE) as client:
        assert client.get("/api/config").json()["surprise"] is True
        reply = client.get("/api/digit/surprise")
        assert reply.status_code == 200
        payload = reply.json()
        assert len(payload["digit"]) == 784 and payload["label"] in range(10) and "unstable" in payload["source"]


def test_fifty_concurrent_slider_requests_are_all_answered(session):
    explorer = Explorer(session, HOST, 0).start()
    digit, _ = mnist_digit(2)
    magnitudes = np.linspace(-45, 45, 50)

    def slide(magnitude: float) -> dict:
        body = json.dumps({"digit": digit.ravel().tolist(), "settings": {"rotate": float(magnitude)}}).encode()
        request = urllib.request.Request(f"{explorer.url}api/predict", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())

    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            replies = list(pool.map(slide, magnitudes))
        for magnitude, reply in zip(magnitudes, replies):
            perturbed, _ = robust_mnist.perturb("rotate", digit[None], float(magnitude), seed=session.seed)
            expected = session.models[0].classifier.predict_proba(perturbed)[0]
            assert np.array_equal(np.array(reply["models"][0]["probabilities"], np.float32), expected)
        with urllib.request.urlopen(f"{explorer.url}api/config", timeout=10) as reply:
            assert reply.status == 200
    finally:
        explorer.stop()


def test_a_port_in_use_is_one_clear_error(session):
    explorer = Explorer(session, HOST, 0)
    try:
        with pytest.raises(robust_mnist.errors.RobustMnistError, match="choose another --port"):
            Explorer(session, HOST, explorer.port)
    finally:
        explorer.socket.close()


def test_the_command_is_registered_and_loads_the_server_lazily(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["explore", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--arch", "--port", "--digits", "--open", "--run"):
        assert flag in out


def test_the_command_serves_what_serve_is_given(monkeypatch, capsys):
    calls = {}

    def fake_serve(models, archs, **options):
        calls.update(models=models, archs=archs, **options)
        options["on_ready"]("http://127.0.0.1:8765/")

    monkeypatch.setattr(explore_server, "serve", fake_serve)
    assert main(["explore", "--arch", "mlp", "--model", "m.onnx", "--port", "9000", "--digits", "mine"]) == 0
    assert calls["archs"] == ["mlp"] and calls["models"] == ["m.onnx"] and calls["port"] == 9000
    assert calls["digits_dir"] == "mine" and calls["host"] == "127.0.0.1"
    assert "http://127.0.0.1:8765/" in capsys.readouterr().out

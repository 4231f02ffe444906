"""`robust-mnist generate mnist-c` (robust_mnist.mnist_c): MNIST-C's published layout, seeded and
reproducible bytes, and a generation killed halfway that ends with the same bytes when run again."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from robust_mnist import cli, mnist_c, perturbations
from robust_mnist.perturbations import mnistc
from robust_mnist.commands import generate as generate_command
from robust_mnist.data import load_mnist
from robust_mnist.errors import InvalidArgumentError

# Two of our existing families stand in for MNIST-C's: one random, one deterministic.
NOISE = mnist_c.DatasetCorruption("noise", "gaussian_noise", 0.3)
SHIFT = mnist_c.DatasetCorruption("shift", "translate_x", 2.0)
SMALL = [mnist_c.DatasetCorruption(mnist_c.IDENTITY, None), NOISE, SHIFT]
N = 30


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted generation of the small subset."""
    return mnist_c.generate_mnist_c(tmp_path_factory.mktemp("mnist_c") / "whole", SMALL, n=N, seed=4)


def test_the_published_layout_shapes_and_dtypes(reference):
    mnist = load_mnist()
    for name in ("identity", "noise", "shift"):
        for split, labels in (("train", mnist.y_train), ("test", mnist.y_test)):
            images = np.load(reference / name / f"{split}_images.npy", allow_pickle=False)
            stored = np.load(reference / name / f"{split}_labels.npy", allow_pickle=False)
            assert images.shape == (N, 28, 28, 1) and images.dtype == np.uint8
            assert stored.shape == (N,) and stored.dtype == np.uint8
            np.testing.assert_array_equal(stored, labels[:N])
    identity = np.load(reference / "identity" / "test_images.npy")
    np.testing.assert_array_equal(identity[..., 0], mnist.x_test[:N])
    # The shift moves ink two columns right: the first two columns are empty.
    shifted = np.load(reference / "shift" / "test_images.npy")[..., 0]
    assert not shifted[:, :, :2].any() and shifted.any()
    manifest = json.loads((reference / mnist_c.MANIFEST).read_text())
    assert manifest["seed"] == 4 and manifest["n"] == N
    assert manifest["corruptions"]["noise"]["family"] == "gaussian_noise"
    assert set(manifest["corruptions"]["noise"]["files"]) == {
        "train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy"}


def test_same_seed_same_bytes_whatever_the_chunking(reference, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_c, "CHUNK", 7)
    again = mnist_c.generate_mnist_c(tmp_path / "again", SMALL, n=N, seed=4)
    assert files(again) == files(reference)
    other = mnist_c.generate_mnist_c(tmp_path / "other", [NOISE], n=N, seed=5, splits=["test"])
    assert (other / "noise" / "test_images.npy").read_bytes() != (reference / "noise" / "test_images.npy").read_bytes()


def test_the_noise_of_a_split_is_its_own(reference):
    # Each corruption and split has its own stream: train and test digits differ, and so does their noise.
    train = np.load(reference / "noise" / "train_images.npy").astype(int) - load_mnist().x_train[:N, :, :, None]
    test = np.load(reference / "noise" / "test_images.npy").astype(int) - load_mnist().x_test[:N, :, :, None]
    assert not np.array_equal(train, test)


def test_interrupted_and_run_again_gives_the_same_bytes(reference, tmp_path):
    out = tmp_path / "resumed"
    calls = []

    def stop_when_the_noise_test_split_starts(event):
        calls.append(event)
        if event.corruption == "noise" and event.split == "test":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mnist_c.generate_mnist_c(out, SMALL, n=N, seed=4, progress=stop_when_the_noise_test_split_starts)
    assert (out / "noise" / "train_images.npy").is_file() and not (out / "shift").exists()
    # A temporary file of a killed writer is swept away.
    (out / "noise" / ".test_images.npy.999.tmp").write_bytes(b"partial")
    seen = []
    mnist_c.generate_mnist_c(out, SMALL, n=N, seed=4, progress=seen.append)
    assert files(out) == files(reference)
    skipped = [(e.corruption, e.split) for e in seen if e.skipped]
    assert skipped == [("identity", "train"), ("identity", "test"), ("noise", "train")]
    assert seen[-1].done == seen[-1].total == 6 * N


def test_killed_by_sigkill_halfway_and_run_again_gives_the_same_bytes(reference, tmp_path):
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal
        from robust_mnist import mnist_c
        corruptions = [mnist_c.DatasetCorruption("identity", None),
                       mnist_c.DatasetCorruption("noise", "gaussian_noise", 0.3),
                       mnist_c.DatasetCorruption("shift", "translate_x", 2.0)]
        def kill(event):
            if event.corruption == "shift" and event.split == "train" and not event.skipped:
                os.kill(os.getpid(), signal.SIGKILL)
        mnist_c.generate_mnist_c({str(out)!r}, corruptions, n={N}, seed=4, progress=kill)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr
    assert not (out / "shift" / "train_images.npy").exists()
    mnist_c.generate_mnist_c(out, SMALL, n=N, seed=4)
    assert files(out) == files(reference)


def test_a_damaged_file_is_regenerated(reference, tmp_path):
    out = tmp_path / "damaged"
    mnist_c.generate_mnist_c(out, SMALL, n=N, seed=4)
    (out / "shift" / "test_images.npy").write_bytes(b"not an array")
    mnist_c.generate_mnist_c(out, SMALL, n=N, seed=4)
    assert files(out) == files(reference)


def test_another_generation_in_the_same_folder_is_refused(reference, tmp_path):
    out = tmp_path / "used"
    mnist_c.generate_mnist_c(out, [NOISE], n=N, seed=4, splits=["test"])
    with pytest.raises(mnist_c.GenerationError, match="seed 4 .now 5."):
        mnist_c.generate_mnist_c(out, [NOISE], n=N, seed=5, splits=["test"])
    with pytest.raises(mnist_c.GenerationError, match="n 30 .now 10."):
        mnist_c.generate_mnist_c(out, [NOISE], n=10, seed=4, splits=["test"])


def test_bad_arguments_name_the_allowed_values(tmp_path):
    with pytest.raises(InvalidArgumentError, match="unknown MNIST-C corruption 'frost'; known: identity, shot_noise"):
        mnist_c.generate_mnist_c(tmp_path, ["frost"])
    with pytest.raises(InvalidArgumentError, match="unknown splits"):
        mnist_c.generate_mnist_c(tmp_path, [NOISE], splits=["validation"])
    with pytest.raises(InvalidArgumentError, match="listed twice"):
        mnist_c.generate_mnist_c(tmp_path, [NOISE, NOISE])


def test_the_command_lists_the_same_corruptions_as_the_library():
    assert generate_command.CORRUPTIONS == (mnist_c.IDENTITY, *mnist_c.CORRUPTIONS)


def test_the_command_writes_the_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    status = cli.main(["generate", "mnist-c", "--out", str(out), "--corruptions", "identity",
                       "--splits", "test", "--limit", "5", "--quiet"])
    assert status == 0
    assert capsys.readouterr().out.strip() == str(out)
    images = np.load(out / "identity" / "test_images.npy")
    assert images.shape == (5, 28, 28, 1)


def test_published_names_map_to_our_families_at_the_published_severity(monkeypatch):
    class Tabled(perturbations.Perturbation):
        name = "fake_tabled"
        SEVERITIES = (0.1, 0.2, 0.3, 0.4, 0.5)
        default_severity = 4

    class Untabled(perturbations.Perturbation):
        name = "fake_untabled"
        published_magnitude = 1.0

    monkeypatch.setitem(perturbations.base._REGISTRY, "fake_tabled", Tabled)
    monkeypatch.setitem(perturbations.base._REGISTRY, "fake_untabled", Untabled)
    monkeypatch.setattr(mnistc, "PUBLISHED", (("shot_noise", "fake_tabled"), ("stripe", "fake_untabled")))
    monkeypatch.setattr(mnistc, "severity_magnitude", lambda name, level: Tabled.SEVERITIES[level - 1])
    monkeypatch.setattr(mnistc, "published_magnitude", lambda name: perturbations.family(name).published_magnitude)
    assert mnist_c.published_corruption("shot_noise") == mnist_c.DatasetCorruption("shot_noise", "fake_tabled", 0.4, 4)
    assert mnist_c.published_corruption("stripe") == mnist_c.DatasetCorruption("stripe", "fake_untabled", 1.0)


def test_the_command_reports_another_generation_in_one_line(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["generate", "mnist-c", "--out", str(out), "--corruptions", "identity", "--splits", "test", "--limit", "3", "--quiet"]
    assert cli.main(argv) == 0
    assert cli.main(argv + ["--seed", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("robust-mnist: error: ") and "seed 0 (now 1)" in err[-1]


def test_every_published_corruption_at_its_published_severity(tmp_path):
    out = mnist_c.generate_mnist_c(tmp_path / "all", n=12, splits=["test"], seed=1)
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == sorted([mnist_c.IDENTITY, *mnist_c.CORRUPTIONS]) and len(folders) == 16
    clean = np.load(out / "identity" / "test_images.npy")
    manifest = json.loads((out / mnist_c.MANIFEST).read_text())
    for name, family in mnistc.PUBLISHED:
        images = np.load(out / name / "test_images.npy", allow_pickle=False)
        assert images.shape == (12, 28, 28, 1) and images.dtype == np.uint8
        assert not np.array_equal(images, clean), name
        cls = perturbations.family(family)
        entry = manifest["corruptions"][name]
        assert entry["family"] == family and entry["magnitude"] == cls.published_magnitude
        assert entry["severity"] == cls.default_severity

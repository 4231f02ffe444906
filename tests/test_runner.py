"""The study runner: run directory, reproducibility, pairing, resume, locking (no TensorFlow)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robust_mnist.errors import RunDirError
from robust_mnist.perturbations import available
from robust_mnist.rundir import BASE_COLUMNS, load_results
from robust_mnist.runner import cells as cells_module
from robust_mnist.runner import run as run_module
from robust_mnist.runner.cells import Progress, plan_cells
from robust_mnist.runner.inputs import stratified_subset
from robust_mnist.runner.run import run_study
from robust_mnist.study import parse_study
from study_fakes import FakeShift, Recording, fake_loader, register_fakes, template_classifier

HERE = Path(__file__).resolve().parent


def small_study(**changes) -> dict:
    study = {
        "name": "small",
        "seed": 3,
        "models": [{"arch": "article", "seed": 0}],
        "data": {"source": "mnist-test", "n": 120},
        "perturbations": [
            {"family": "fake_shift", "magnitudes": [-2, 1, 3]},
            {"family": "fake_noise", "magnitudes": [0.3, 0.6], "draws": 2, "n": 40},
        ],
    }
    study.update(changes)
    return study


@pytest.fixture
def fakes(monkeypatch):
    register_fakes(monkeypatch)


def run(tmp_path, study=None, name="run", **options):
    spec = parse_study(study or small_study())
    options.setdefault("model_loader", fake_loader())
    return run_study(spec, tmp_path / name, **options)


def table(run_dir) -> pd.DataFrame:
    return pd.read_parquet(Path(run_dir) / "results.parquet")


# ------------------------------------------------------------------ the run directory


def test_run_directory_has_the_documented_files_and_columns(fakes, tmp_path):
    outcome = run(tmp_path)
    run_dir = outcome.run_dir
    assert outcome.status == "complete"
    for name in ("run.json", "digits.npz", "results.parquet", "exemplars.npz"):
        assert (run_dir / name).is_file(), name
    # 1 clean + 3 shifts + 2 noise magnitudes x 2 draws
    assert len(list((run_dir / "cells").glob("*.parquet"))) == 8 == outcome.cells_computed

    results = table(run_dir)
    assert list(results.columns[: len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
    assert set(results.columns[len(BASE_COLUMNS):]) == {"param_shift", "param_sd", "param_seed"}
    assert len(results) == 120 + 3 * 120 + 2 * 2 * 40
    for column in ("magnitude", "param_shift", "param_sd", "param_seed"):
        assert results[column].dtype == np.float64
    for column in ("image", "draw", "label", "clean_pred", "pred"):
        assert results[column].dtype == np.int64
    for column in ("p_true", "p_pred", *[f"p{k}" for k in range(10)]):
        assert results[column].dtype == np.float32

    probabilities = results[[f"p{k}" for k in range(10)]].to_numpy()
    rows = np.arange(len(results))
    np.testing.assert_array_equal(results["pred"], probabilities.argmax(axis=1))
    np.testing.assert_array_equal(results["p_true"], probabilities[rows, results["label"]])
    np.testing.assert_array_equal(results["p_pred"], probabilities.max(axis=1))

    clean = results[results["family"] == "clean"]
    assert len(clean) == 120 and (clean["magnitude"] == 0).all() and (clean["draw"] == 0).all()
    clean_pred = clean.set_index("image")["pred"]
    np.testing.assert_array_equal(results["clean_pred"], clean_pred.loc[results["image"]].to_numpy())

    # Sorted by family (study order), magnitude, draw, image.
    order = {"clean": 0, "fake_shift": 1, "fake_noise": 2}
    keys = list(zip(results["family"].map(order), results["magnitude"], results["draw"], results["image"]))
    assert keys == sorted(keys)

    with np.load(run_dir / "digits.npz", allow_pickle=False) as digits:
        assert digits["images"].shape == (120, 28, 28) and digits["images"].dtype == np.uint8
        np.testing.assert_array_equal(digits["labels"], clean.sort_values("image")["label"])
        assert digits["ids"][0].startswith("mnist-test:")

    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["finished"] and info["seed"] == 3
    assert info["study"]["name"] == "small"
    assert set(info["versions"]) >= {"python", "numpy", "tensorflow", "keras", "robust_mnist"}
    assert info["data"]["source"] == "mnist-test" and info["data"]["n"] == 120
    assert len(info["data"]["checksum"]) == 64
    assert info["models"]["article-seed0"]["checksum"] == "fake-article-seed0"
    assert info["families"]["fake_noise"] == {
        "family": "fake_noise", "unit": "intensity sd", "random": True,
        "description": "additive Gaussian noise", "magnitudes": [0.3, 0.6], "draws": 2, "n_digits": 40,
    }


def test_subsets_are_class_stratified_and_nested_in_the_study_digits(fakes, tmp_path, mnist):
    results = table(run(tmp_path).run_dir)
    labels = results[results["family"] == "clean"]["label"].to_numpy()
    # 120 of the 10,000 test digits: each class within one digit of its share.
    shares = np.bincount(labels, minlength=10) / 120
    test_shares = np.bincount(mnist.y_test) / len(mnist.y_test)
    assert np.all(np.abs(shares - test_shares) <= 1 / 120 + 1e-12)
    noise = results[results["family"] == "fake_noise"]
    images = noise.groupby(["magnitude", "draw"])["image"].apply(tuple)
    assert images.nunique() == 1 and len(images.iloc[0]) == 40


def test_stratified_subset_keeps_class_shares():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    chosen = stratified_subset(labels, 20, np.random.default_rng(0))
    assert len(np.unique(chosen)) == 20
    np.testing.assert_array_equal(np.bincount(labels[chosen]), [10, 6, 3, 1])
    again = stratified_subset(labels, 20, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, again)


def test_exemplars_regenerate_the_evaluated_digits(fakes, tmp_path):
    run_dir = run(tmp_path).run_dir
    results = table(run_dir)
    with np.load(run_dir / "digits.npz") as digits:
        clean_images = digits["images"]
    ex = np.load(run_dir / "exemplars.npz")
    assert list(ex["labels"]) == ["fake_shift", "fake_noise"]
    assert list(ex["models"]) == ["article-seed0"]
    assert list(ex["selections"]) == ["unstable", "stable", "early_flip"]

    images = ex["fake_shift/images"]
    np.testing.assert_array_equal(ex["fake_shift/magnitudes"], [-2.0, 0.0, 1.0, 3.0])
    strips = ex["fake_shift/strips"]
    assert strips.shape == (len(images), 4, 28, 28) and strips.dtype == np.uint8
    # Column of magnitude 0 is the clean digit; +3 is the digit moved 3 px right.
    np.testing.assert_array_equal(strips[:, 1], clean_images[images])
    shifted = np.zeros_like(clean_images[images])
    shifted[:, :, 3:] = clean_images[images][:, :, :25]
    np.testing.assert_array_equal(strips[:, 3], shifted)
    np.testing.assert_array_equal(ex["fake_shift/param/shift"][:, 3], 3.0)

    # Probabilities come from the table.
    at_three = results[(results["family"] == "fake_shift") & (results["magnitude"] == 3)].set_index("image")
    np.testing.assert_array_equal(
        ex["fake_shift/probs"][0, :, 3], at_three.loc[images, [f"p{k}" for k in range(10)]].to_numpy()
    )

    # The most unstable digit has the largest range of p_true over the sweep (clean included).
    shift_rows = results[results["family"].isin(["clean", "fake_shift"])]
    swing = shift_rows.groupby("image")["p_true"].agg(lambda p: p.max() - p.min())
    unstable = ex["fake_shift/unstable"][0]
    assert swing.loc[unstable[0]] == swing.max()
    assert list(swing.loc[unstable]) == sorted(swing.loc[unstable], reverse=True)
    # The stable ones are classified correctly when clean.
    clean = results[results["family"] == "clean"].set_index("image")
    stable = ex["fake_shift/stable"][0]
    assert (clean.loc[stable, "pred"] == clean.loc[stable, "label"]).all()
    # Early flips: their prediction changes at the smallest |magnitude| (1 px here).
    flips = results[(results["family"] == "fake_shift") & (results["pred"] != results["clean_pred"])]
    smallest = flips.assign(size=flips["magnitude"].abs()).groupby("image")["size"].min()
    early = ex["fake_shift/early_flip"][0]
    early = early[early >= 0]
    assert list(smallest.loc[early]) == sorted(smallest.loc[early])
    assert smallest.loc[early[0]] == smallest.min()

    # Noise strips are regenerated exactly from the stored per-image seeds (draw 0).
    noise_images = ex["fake_noise/images"]
    rows = results[(results["family"] == "fake_noise") & (results["magnitude"] == 0.6) & (results["draw"] == 0)]
    seeds = rows.set_index("image").loc[noise_images, "param_seed"].to_numpy()
    for k, (image, seed) in enumerate(zip(noise_images, seeds)):
        noise = np.random.default_rng(int(seed)).normal(0.0, 0.6, size=(28, 28))
        expected = np.clip(clean_images[image] / np.float32(255) + noise, 0, 1)
        np.testing.assert_array_equal(ex["fake_noise/strips"][k, 2], np.round(expected * 255).astype(np.uint8))


# ------------------------------------------------------------------ reproducibility


def test_same_study_gives_bit_identical_tables_whatever_the_chunk_size(fakes, tmp_path, monkeypatch):
    # Model blocks of 50 digits, so that chunks of 7 are gathered and chunks of 1000 split.
    monkeypatch.setattr(cells_module, "MODEL_BATCH", 50)
    families = [f for f in ("rotate", "gaussian_noise", "elastic") if f in available()]
    study = small_study(perturbations=[
        {"family": "fake_shift", "magnitudes": [2]},
        {"family": "fake_noise", "magnitudes": [0.4], "draws": 2},
        *({"family": f, "magnitudes": [30 if f == "rotate" else 0.3 if f == "gaussian_noise" else 24]}
          for f in families),
    ])
    small = table(run(tmp_path, study, "chunk7", chunk_size=7).run_dir)
    large = table(run(tmp_path, study, "chunk1000", chunk_size=1000).run_dir)
    pd.testing.assert_frame_equal(small, large, check_exact=True)
    assert set(small["family"]) == {"clean", "fake_shift", "fake_noise", *families}


def test_random_draws_differ_but_reruns_repeat(fakes, tmp_path):
    first = table(run(tmp_path, name="a").run_dir)
    second = table(run(tmp_path, name="b").run_dir)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    noise = first[first["family"] == "fake_noise"]
    draw0 = noise[(noise["draw"] == 0) & (noise["magnitude"] == 0.3)]["param_seed"].to_numpy()
    draw1 = noise[(noise["draw"] == 1) & (noise["magnitude"] == 0.3)]["param_seed"].to_numpy()
    assert not np.array_equal(draw0, draw1)


def test_cell_randomness_does_not_depend_on_the_other_specs(fakes, tmp_path):
    alone = small_study(perturbations=[{"family": "fake_noise", "magnitudes": [0.3], "draws": 1}])
    with_more = small_study(perturbations=[
        {"family": "fake_shift", "magnitudes": [1, 2]},
        {"family": "fake_noise", "magnitudes": [0.3, 0.5], "draws": 1},
    ])
    a = table(run(tmp_path, alone, "alone").run_dir)
    b = table(run(tmp_path, with_more, "more").run_dir)
    pick = lambda t: t[(t["family"] == "fake_noise") & (t["magnitude"] == 0.3)].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(pick(a).dropna(axis=1), pick(b).dropna(axis=1), check_exact=True)


def test_every_model_sees_the_same_perturbed_digits(fakes, tmp_path):
    sharp, soft = Recording(template_classifier()), Recording(template_classifier(), sharpness_scale=0.3)
    study = small_study(models=[{"arch": "article", "seeds": [0, 1]}])
    outcome = run(tmp_path, study, model_loader=fake_loader({"article-seed0": sharp, "article-seed1": soft}))
    assert len(sharp.batches) == len(soft.batches)
    for a, b in zip(sharp.batches, soft.batches):
        np.testing.assert_array_equal(a, b)
    results = table(outcome.run_dir)
    first, second = (results[results["model"] == m].reset_index(drop=True) for m in ("article-seed0", "article-seed1"))
    for column in ("family", "magnitude", "draw", "image", "param_seed", "param_shift"):
        pd.testing.assert_series_equal(first[column], second[column])
    # Different models, different probabilities: the pairing is in the inputs, not the outputs.
    assert not np.array_equal(first["p_true"], second["p_true"])
    assert list(results["model"].unique()) == ["article-seed0", "article-seed1"]


# ------------------------------------------------------------------ nothing lost


class StopAfter(Progress):
    """Simulates Ctrl-C once ``cells`` cells are on disk."""

    def __init__(self, cells: int) -> None:
        self.left = cells

    def cell_finished(self, cell) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt


def test_resume_after_interrupt_computes_only_missing_cells_and_matches(fakes, tmp_path):
    reference = table(run(tmp_path, name="reference").run_dir)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, name="resumed", progress=StopAfter(3))
    run_dir = tmp_path / "resumed"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert len(list((run_dir / "cells").glob("*.parquet"))) == 3
    assert not (run_dir / "results.parquet").exists()
    partial = load_results(run_dir)
    assert set(partial["family"]) <= {"clean", "fake_shift"} and len(partial) == 120 * 3

    with pytest.raises(RunDirError, match="--resume.*--force"):
        run(tmp_path, name="resumed")
    outcome = run(tmp_path, name="resumed", resume=True)
    assert (outcome.cells_computed, outcome.cells_reused) == (5, 3)
    pd.testing.assert_frame_equal(table(run_dir), reference, check_exact=True)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_models_are_retrained_when_a_run_starts_never_when_it_resumes(fakes, tmp_path, monkeypatch):
    """--retrain (retrain=True) and the spec's retrain = true rebuild the models of a new run;
    a resumed run keeps the models it started with (they are in the cache by then)."""
    asked = []

    def recording_loader(model, engine="keras", retrain=None):  # load_model's signature
        asked.append(model.retrain if retrain is None else retrain)
        return fake_loader()(model)

    monkeypatch.setattr(run_module, "load_model", recording_loader)
    study = small_study(models=[{"arch": "article", "seed": 0, "retrain": True}])
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, study, model_loader=None, progress=StopAfter(2))
    run(tmp_path, study, model_loader=None, resume=True)
    run(tmp_path, name="flag", model_loader=None, retrain=True)
    run(tmp_path, name="neither", model_loader=None)
    assert asked == [True, False, True, False]


def test_a_damaged_cell_file_is_computed_again(fakes, tmp_path):
    reference = table(run(tmp_path, name="reference").run_dir)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, name="damaged", progress=StopAfter(4))
    cells = sorted((tmp_path / "damaged" / "cells").glob("fake_shift*.parquet"))
    cells[0].write_bytes(cells[0].read_bytes()[:100])
    (tmp_path / "damaged" / "cells" / ".fake_shift__3.0__d0.parquet.999.tmp").write_bytes(b"partial")
    outcome = run(tmp_path, name="damaged", resume=True)
    assert outcome.cells_computed == 5
    pd.testing.assert_frame_equal(table(tmp_path / "damaged"), reference, check_exact=True)
    assert not list((tmp_path / "damaged" / "cells").glob(".*.tmp"))


def test_finished_run_is_a_no_op_unless_forced(fakes, tmp_path):
    run_dir = run(tmp_path).run_dir
    stamp = (run_dir / "results.parquet").stat().st_mtime_ns
    again = run(tmp_path)
    assert again.status == "already-complete" and again.cells_computed == 0
    assert (run_dir / "results.parquet").stat().st_mtime_ns == stamp
    forced = run(tmp_path, force=True)
    assert forced.status == "complete" and forced.cells_computed == 8


def test_resume_refuses_a_changed_study(fakes, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, progress=StopAfter(2))
    changed = small_study(perturbations=[{"family": "fake_shift", "magnitudes": [-2, 1, 4]}])
    with pytest.raises(RunDirError, match="study file has changed"):
        run(tmp_path, changed, resume=True)
    with pytest.raises(RunDirError, match=r"another study \('small'\)"):
        run(tmp_path, small_study(name="other"), resume=True)


def test_resume_refuses_a_changed_model(fakes, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, progress=StopAfter(2))

    def other_model(model):
        loaded = fake_loader()(model)
        loaded.info["checksum"] = "retrained"
        return loaded

    with pytest.raises(RunDirError, match="model 'article-seed0' changed"):
        run(tmp_path, resume=True, model_loader=other_model)


def test_second_run_into_a_locked_directory_refuses(fakes, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunDirError, match="in use by another run"):
            run(tmp_path)
    assert run(tmp_path).status == "complete"  # released with the file


def test_model_output_that_is_not_probabilities_is_a_clear_error(fakes, tmp_path):
    class Broken:
        def predict_proba(self, images):
            return np.zeros((len(images), 9), np.float32)

    with pytest.raises(ValueError, match="model 'article-seed0' returned shape"):
        run(tmp_path, model_loader=fake_loader({"article-seed0": Broken()}))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


KILLED_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
from robust_mnist.perturbations import base
from robust_mnist.runner.run import run_study
from robust_mnist.study import parse_study
from study_fakes import FakeNoise, FakeShift, fake_loader, template_classifier
from test_runner import small_study

for cls in (FakeShift, FakeNoise):
    base._REGISTRY[cls.name] = cls

class Slow:
    def predict_proba(self, images):
        time.sleep(0.3)
        return template_classifier().predict_proba(images)

run_study(parse_study(small_study()), {run_dir!r}, model_loader=fake_loader({{"article-seed0": Slow()}}))
"""


def test_resume_after_sigkill_matches_an_uninterrupted_run(fakes, tmp_path):
    reference = table(run(tmp_path, name="reference").run_dir)
    run_dir = tmp_path / "killed"
    script = KILLED_RUN.format(tests=str(HERE), run_dir=str(run_dir))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if len(list((run_dir / "cells").glob("*.parquet"))) >= 2:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode()
        # While it runs, a second run into the same directory refuses.
        with pytest.raises(RunDirError, match="in use"):
            run(tmp_path, name="killed", resume=True)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    saved = len(list((run_dir / "cells").glob("*.parquet")))
    assert 2 <= saved < 8
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    outcome = run(tmp_path, name="killed", resume=True)
    assert outcome.cells_computed == 8 - saved
    pd.testing.assert_frame_equal(table(run_dir), reference, check_exact=True)


# ------------------------------------------------------------------ the user's folder


def test_folder_of_user_images_with_labels_from_file_names(fakes, tmp_path, mnist):
    folder = tmp_path / "digits"
    folder.mkdir()
    for index in range(10):
        # Dark ink on light paper, four times MNIST's size, as a scan would be.
        image = Image.fromarray(255 - mnist.x_test[index]).resize((112, 112), Image.BILINEAR)
        image.save(folder / f"{mnist.y_test[index]}_{index}.png")
    study = small_study(
        data={"source": "folder", "path": str(folder)},
        perturbations=[{"family": "fake_shift", "magnitudes": [1]}],
    )
    run_dir = run(tmp_path, study).run_dir
    with np.load(run_dir / "digits.npz") as digits:
        names = sorted(f"{mnist.y_test[i]}_{i}.png" for i in range(10))
        assert list(digits["ids"]) == names
        assert list(digits["labels"]) == [int(name[0]) for name in names]
    assert len(table(run_dir)) == 20

    (folder / "labels.csv").write_text("file,label\n" + "".join(f"{n},{(int(n[0]) + 1) % 10}\n" for n in names))
    relabelled = small_study(
        data={"source": "folder", "path": str(folder), "labels": str(folder / "labels.csv")},
        perturbations=[{"family": "fake_shift", "magnitudes": [1]}],
    )
    with np.load(run(tmp_path, relabelled, "csv").run_dir / "digits.npz") as digits:
        assert list(digits["labels"]) == [(int(name[0]) + 1) % 10 for name in names]


def test_folder_file_without_a_label_is_an_error_naming_it(fakes, tmp_path, mnist):
    folder = tmp_path / "digits"
    folder.mkdir()
    Image.fromarray(mnist.x_test[0]).save(folder / "mine.png")
    study = small_study(data={"source": "folder", "path": str(folder)})
    with pytest.raises(ValueError, match="mine.png: cannot tell the digit's label"):
        run(tmp_path, study)


def test_plan_starts_with_clean_then_follows_the_study():
    spec = parse_study({
        "name": "p", "models": [{"arch": "article"}],
        "perturbations": [{"family": "rotate", "magnitudes": [10, -10]},
                          {"family": "gaussian_noise", "magnitudes": [0.1], "draws": 2}],
    })
    keys = [cell.key for cell in plan_cells(spec)]
    assert keys == ["clean", "rotate__-10.0__d0", "rotate__10.0__d0",
                    "gaussian_noise__0.1__d0", "gaussian_noise__0.1__d1"]


def test_fake_shift_reference():
    """The fake family itself, by hand: a one-hot pixel moves right by the shift."""
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 5, 5] = 1
    moved = FakeShift().apply(image, {"shift": np.array([2])})
    assert moved[0, 5, 7] == 1 and moved.sum() == 1


def test_bisection_refines_critical_magnitudes_between_grid_points(tmp_path):
    from robust_mnist.data import to_float
    from robust_mnist.digit_metrics import critical_magnitudes
    from robust_mnist.perturbations import perturb
    from robust_mnist.rundir import load_digits, load_refined

    study = small_study(perturbations=[{"family": "rotate", "magnitudes": [-40, -20, 20, 40], "refine": 6},
                                       {"family": "scale", "magnitudes": [-30, 30]}],
                        data={"source": "mnist-test", "n": 60})
    run_dir = tmp_path / "run"
    run_study(parse_study(study), run_dir, model_loader=fake_loader())
    table = load_refined(run_dir)
    assert set(table["family"]) == {"rotate"}  # scale did not ask for it
    refined = critical_magnitudes(load_results(run_dir), refined=table)
    flipped = refined[np.isfinite(refined["critical_magnitude"]) & (refined["family"] == "rotate")]
    assert len(flipped) > 5 and flipped["refined"].all() and len(flipped) == len(table)
    assert not refined.loc[refined["family"] == "scale", "refined"].any()
    classifier = template_classifier()
    images = to_float(load_digits(run_dir).images)
    for row in flipped.itertuples():
        # The refined angle flips the prediction; 20/2**6 degrees closer to 0 it does not yet.
        digit = images[row.image : row.image + 1]
        clean = classifier.predict_proba(digit).argmax()
        at = perturb("rotate", digit, row.signed_magnitude)[0]
        assert classifier.predict_proba(at).argmax() != clean
        before = perturb("rotate", digit, row.signed_magnitude - np.sign(row.signed_magnitude) * 20 / 2**6)[0]
        assert classifier.predict_proba(before).argmax() == clean
        assert min(row.bracket_magnitude, row.bracket_magnitude + np.sign(row.signed_magnitude) * 20) \
            <= row.signed_magnitude <= max(row.bracket_magnitude, row.bracket_magnitude + np.sign(row.signed_magnitude) * 20)


def test_only_deterministic_families_can_be_refined():
    with pytest.raises(ValueError, match="random.*only deterministic families can be refined"):
        parse_study(small_study(perturbations=[{"family": "gaussian_noise", "magnitudes": [0.1], "refine": 4}]))
    with pytest.raises(ValueError, match="refine.*from 0 to 20"):
        parse_study(small_study(perturbations=[{"family": "rotate", "magnitudes": [10], "refine": -1}]))
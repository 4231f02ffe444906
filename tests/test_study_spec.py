"""Study files: what a valid file means, and a one-line error for every kind of mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from robust_mnist.perturbations import family
from robust_mnist.study import StudyError, load_study

STUDIES = Path(__file__).resolve().parent.parent / "studies"

VALID = """
name = "demo"
seed = 7

[[models]]
arch = "article"
seeds = [0, 1]

[data]
source = "mnist-test"
n = 200

[[perturbations]]
family = "rotate"
magnitudes = [30, 0, -15, 15]

[[perturbations]]
family = "gaussian_noise"

[[perturbations]]
family = "elastic"
label = "elastic-smooth"
sigma = 6.0
magnitudes = [16]
draws = 2
n = 50
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_study_fills_in_defaults(tmp_path):
    spec = load_study(write(tmp_path, VALID))
    assert spec.name == "demo" and spec.seed == 7
    assert [m.name for m in spec.models] == ["article-seed0", "article-seed1"]
    assert [(m.arch, m.seed) for m in spec.models] == [("article", 0), ("article", 1)]
    assert spec.data.source == "mnist-test" and spec.data.n == 200
    rotate, noise, elastic = spec.perturbations
    # 0 is dropped (the clean rows stand for it) and the grid is sorted.
    assert rotate.label == "rotate" and rotate.magnitudes == (-15.0, 15.0, 30.0)
    assert rotate.draws == 1 and rotate.n is None
    # Default grid without its 0; random families default to 3 draws.
    expected = tuple(m for m in family("gaussian_noise").default_magnitudes if m != 0)
    assert noise.magnitudes == expected and noise.draws == 3
    assert elastic.label == "elastic-smooth" and dict(elastic.options) == {"sigma": 6.0}
    assert elastic.draws == 2 and elastic.n == 50
    assert elastic.make().options["sigma"] == 6.0


def test_retrain_asks_for_the_models_to_be_rebuilt_without_changing_the_study(tmp_path):
    plain = load_study(write(tmp_path, VALID))
    again = load_study(write(tmp_path, VALID.replace("seeds = [0, 1]", "seeds = [0, 1]\nretrain = true"), "again.toml"))
    assert [m.retrain for m in plain.models] == [False, False]
    assert [m.retrain for m in again.models] == [True, True]
    assert again.spec_hash() == plain.spec_hash()  # same study, same results: only the weights are rebuilt
    with pytest.raises(StudyError, match=r"models\[0\]\.retrain: must be true or false; got 'yes'"):
        load_study(write(tmp_path, VALID.replace("seeds = [0, 1]", "seeds = [0, 1]\nretrain = 'yes'"), "bad.toml"))
    (tmp_path / "mine.keras").write_bytes(b"x")
    on_a_file = VALID.replace('arch = "article"\nseeds = [0, 1]', 'path = "mine.keras"\nretrain = true')
    with pytest.raises(StudyError, match=r"models\[0\]\.retrain: applies to arch models only"):
        load_study(write(tmp_path, on_a_file, "file.toml"))


def test_model_given_by_path_is_resolved_against_the_study_file(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.keras").write_bytes(b"x")
    spec = load_study(write(tmp_path, """
        name = "p"
        [[models]]
        path = "models/mine.keras"
        [[perturbations]]
        family = "rotate"
        """))
    assert spec.models[0].name == "mine"
    assert spec.models[0].path == (tmp_path / "models" / "mine.keras").resolve()


def test_spec_hash_ignores_comments_order_and_spelled_out_defaults(tmp_path):
    first = load_study(write(tmp_path, """
        name = "h"
        [[models]]
        arch = "article"
        [[perturbations]]
        family = "rotate"
        magnitudes = [10, 20]
        """, "a.toml"))
    second = load_study(write(tmp_path, """
        # the same study, written differently
        seed = 0
        name = "h"
        [[models]]
        seed = 0
        arch = "article"
        [data]
        source = "mnist-test"
        [[perturbations]]
        magnitudes = [20.0, 10, 0]
        family = "rotate"
        label = "rotate"
        """, "b.toml"))
    changed = load_study(write(tmp_path, """
        name = "h"
        [[models]]
        arch = "article"
        [[perturbations]]
        family = "rotate"
        magnitudes = [10, 25]
        """, "c.toml"))
    assert first.spec_hash() == second.spec_hash()
    assert first.spec_hash() != changed.spec_hash()


BASE = """
name = "bad"
[[models]]
arch = "article"
[[perturbations]]
family = "rotate"
"""

# (study text, the key the message must name, a phrase it must contain). TOML puts keys
# written after [[perturbations]] into that table: top-level keys go before BASE.
BAD = {
    "syntax error": ('name = "x\n', "", "TOML syntax error"),
    "misspelt top-level key": ("seeed = 1\n" + BASE, "seeed", "did you mean 'seed'"),
    "missing name": (BASE.replace('name = "bad"', ""), "name", "is required"),
    "seed of wrong type": ('seed = "zero"\n' + BASE, "seed", "must be an integer"),
    "negative seed": ("seed = -1\n" + BASE, "seed", "non-negative"),
    "unknown family": (BASE.replace('"rotate"', '"rotat"'), "perturbations[0].family", "known: blur"),
    "misspelt perturbation key": (
        BASE + "magnitude = [10]\n", "perturbations[0].magnitude", "did you mean 'magnitudes'"),
    "misspelt family option": (
        BASE.replace('"rotate"', '"elastic"') + "sigmaa = 3\n", "perturbations[0].sigmaa",
        "did you mean 'sigma'"),
    "magnitude out of range": (BASE + "magnitudes = [10, 500]\n", "perturbations[0].magnitudes", "range [-180, 180]"),
    "magnitudes not numbers": (BASE + 'magnitudes = "10"\n', "perturbations[0].magnitudes", "list of numbers"),
    "only magnitude 0": (BASE + "magnitudes = [0]\n", "perturbations[0].magnitudes", "clean rows"),
    "duplicate magnitudes": (BASE + "magnitudes = [10, 10.0]\n", "perturbations[0].magnitudes", "duplicates"),
    "draws for a deterministic family": (BASE + "draws = 3\n", "perturbations[0].draws", "deterministic"),
    "draws zero": (BASE.replace('"rotate"', '"gaussian_noise"') + "draws = 0\n", "perturbations[0].draws", "positive"),
    "subset larger than the data": (BASE + "n = 20000\n", "perturbations[0].n", "exceeds"),
    "label unsafe for a file name": (BASE + 'label = "rot/ate"\n', "perturbations[0].label", "not allowed"),
    "duplicate labels": (BASE + '[[perturbations]]\nfamily = "rotate"\n', "perturbations", "duplicate labels"),
    "no perturbations": ('name = "x"\n[[models]]\narch = "article"\n', "perturbations", "is required"),
    "unknown architecture": (BASE.replace('arch = "article"', 'arch = "resnet"'), "models[0].arch", "known: article"),
    "missing model file": (
        BASE.replace('arch = "article"', 'path = "nowhere.keras"'), "models[0].path", "model file not found"),
    "model file not .keras": (BASE.replace('arch = "article"', 'path = "model.h5"'), "models[0].path", ".keras"),
    "arch and path": (BASE.replace('arch = "article"', 'arch = "article"\npath = "m.keras"'), "models[0]", "either"),
    "seed and seeds": (BASE.replace('arch = "article"', 'arch = "article"\nseed = 1\nseeds = [2]'), "models[0]", "not both"),
    "duplicate model names": (BASE + '[[models]]\narch = "article"\n', "models", "duplicate model names"),
    "unknown data source": (BASE + '[data]\nsource = "emnist"\n', "data.source", "allowed: mnist-test, folder"),
    "data subset too large": (BASE + "[data]\nn = 10001\n", "data.n", "between 1 and 10000"),
    "key of the other source": (BASE + '[data]\nsource = "mnist-test"\npath = "x"\n', "data.path", "allowed: source, n"),
    "missing data folder": (BASE + '[data]\nsource = "folder"\npath = "no_such_dir"\n', "data.path", "folder not found"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_mistake_is_a_one_line_error_naming_file_and_key(tmp_path, case):
    text, key, phrase = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(StudyError) as caught:
        load_study(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert f": {key}: " in message or not key
    assert phrase in message


def test_missing_study_file_is_a_one_line_error(tmp_path):
    with pytest.raises(StudyError, match="study file not found"):
        load_study(tmp_path / "absent.toml")


@pytest.mark.parametrize("name", ["article.toml", "quick.toml", "own_digits.toml"])
def test_shipped_studies_are_valid(name):
    spec = load_study(STUDIES / name)
    assert spec.perturbations and spec.models

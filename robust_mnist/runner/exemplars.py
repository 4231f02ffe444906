"""The report's gallery digits: for each family, the digits that swing most, least and flip
earliest (per model), and those the models disagree on most, with their perturbed images
regenerated from the stored parameters and every model's probabilities along the sweep.

Written once at the end of a run into exemplars.npz (layout in :mod:`robust_mnist.rundir`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import rundir
from ..data import to_float
from ..rundir import PROBABILITY_COLUMNS, Digits
from ..study import PerturbationSpec, StudySpec

#: Digits per gallery selection in exemplars.npz.
EXEMPLARS_PER_SELECTION = 6
SELECTIONS = ("unstable", "stable", "early_flip")


def write_exemplars(run_dir: Path, spec: StudySpec, run_info: dict[str, Any]) -> None:
    """Pick each family's gallery digits and regenerate their perturbed images (layout in
    :mod:`robust_mnist.rundir`)."""
    run_dir = Path(run_dir)
    digits = rundir.load_digits(run_dir)
    images = to_float(digits.images)
    models = list(run_info["models"])
    spec_hash = run_info["spec_hash"]
    clean_entry = run_info["cells"][0]
    clean = rundir.read_cell(run_dir, clean_entry["key"], spec_hash, int(clean_entry["rows"]))
    clean_df = clean.to_pandas()
    out: dict[str, np.ndarray] = {
        "labels": np.array([p.label for p in spec.perturbations]),
        "models": np.array(models),
        "selections": np.array(SELECTIONS),
    }
    for perturbation in spec.perturbations:
        tables, dtypes = [], {}
        for entry in run_info["cells"]:
            if entry["family"] == perturbation.label:
                table = rundir.read_cell(run_dir, entry["key"], spec_hash, int(entry["rows"]))
                dtypes.update(rundir.cell_metadata(table).get("param_dtypes", {}))
                tables.append(table.replace_schema_metadata(None))
        frame = pa.concat_tables(tables, promote_options="default").to_pandas()
        out.update(_family_exemplars(perturbation, frame, clean_df, models, digits, images, dtypes))
    rundir.save_npz_atomically(run_dir / rundir.EXEMPLARS_FILE, out)


def _family_exemplars(
    perturbation: PerturbationSpec,
    frame: pd.DataFrame,
    clean: pd.DataFrame,
    models: list[str],
    digits: Digits,
    images: np.ndarray,
    dtypes: dict[str, str],
) -> dict[str, np.ndarray]:
    k = EXEMPLARS_PER_SELECTION
    label = perturbation.label
    subset = np.sort(frame["image"].unique())
    selections = {name: np.full((len(models), k), -1, np.int64) for name in SELECTIONS}
    swing, critical = {}, {}
    for m, model in enumerate(models):
        rows = frame[frame["model"] == model]
        clean_rows = clean[clean["model"] == model].set_index("image").loc[subset]
        p_true = pd.concat([rows[["image", "p_true"]], clean_rows["p_true"].reset_index()])
        grouped = p_true.groupby("image")["p_true"]
        model_swing = (grouped.max() - grouped.min()).reindex(subset)
        flipped = rows[rows["pred"] != rows["clean_pred"]]
        model_critical = flipped["magnitude"].abs().groupby(flipped["image"]).min().reindex(subset)
        swing[model], critical[model] = model_swing, model_critical
        table = pd.DataFrame({"image": subset, "swing": model_swing.to_numpy(),
                              "critical": model_critical.to_numpy(),
                              "correct": (clean_rows["pred"] == clean_rows["label"]).to_numpy()})
        unstable = table.sort_values(["swing", "image"], ascending=[False, True], kind="stable")
        stable = table[table["correct"]].sort_values(["swing", "image"], kind="stable")
        early = table[table["critical"].notna()].sort_values(
            ["critical", "swing", "image"], ascending=[True, False, True], kind="stable")
        for name, ordered in zip(SELECTIONS, (unstable, stable, early)):
            chosen = ordered["image"].to_numpy()[:k]
            selections[name][m, : len(chosen)] = chosen
    disagree = _most_disagreed(frame, clean, models, subset, k) if len(models) > 1 else None
    chosen = [s[s >= 0] for s in selections.values()] + ([disagree] if disagree is not None else [])
    gallery = np.unique(np.concatenate(chosen).astype(np.int64))

    sweep = np.array(sorted({0.0, *perturbation.magnitudes}), dtype=np.float64)
    strips = np.zeros((len(gallery), len(sweep), 28, 28), np.uint8)
    probs = np.zeros((len(models), len(gallery), len(sweep), 10), np.float32)
    param_keys = list(dtypes)
    params = {key: np.full((len(gallery), len(sweep)), np.nan) for key in param_keys}
    family = perturbation.make()
    first_draw = frame[frame["draw"] == 0]
    for s, magnitude in enumerate(sweep):
        if magnitude == 0.0 and magnitude not in perturbation.magnitudes:
            strips[:, s] = digits.images[gallery]
            for m, model in enumerate(models):
                rows = clean[clean["model"] == model].set_index("image").loc[gallery]
                probs[m, :, s] = rows[list(PROBABILITY_COLUMNS)].to_numpy(np.float32)
            continue
        at = first_draw[first_draw["magnitude"] == magnitude]
        for m, model in enumerate(models):
            rows = at[at["model"] == model].set_index("image").loc[gallery]
            probs[m, :, s] = rows[list(PROBABILITY_COLUMNS)].to_numpy(np.float32)
            if m == 0:
                stored = {key: rows[f"param_{key}"].to_numpy() for key in param_keys}
        for key in param_keys:
            params[key][:, s] = stored[key]
        realised = {key: stored[key].astype(np.dtype(dtypes[key])) for key in param_keys}
        perturbed = family.apply(images[gallery], realised)
        strips[:, s] = np.clip(np.round(np.asarray(perturbed) * 255.0), 0, 255).astype(np.uint8)

    out = {
        f"{label}/family": np.array(perturbation.family),
        f"{label}/unit": np.array(family.unit),
        f"{label}/images": gallery,
        f"{label}/magnitudes": sweep,
        f"{label}/strips": strips,
        f"{label}/probs": probs,
        f"{label}/swing": np.stack([swing[m].loc[gallery].to_numpy(np.float32) for m in models]),
        f"{label}/critical": np.stack([critical[m].loc[gallery].to_numpy(np.float64) for m in models]),
    }
    out.update({f"{label}/param/{key}": value for key, value in params.items()})
    out.update({f"{label}/{name}": value for name, value in selections.items()})
    if disagree is not None:
        out[f"{label}/disagree"] = disagree
    return out


def _most_disagreed(
    frame: pd.DataFrame, clean: pd.DataFrame, models: list[str], subset: np.ndarray, k: int
) -> np.ndarray:
    """The ``k`` digits whose draw-0 sweep holds the input the models disagree on most.

    Disagreement of one input: ``mean_{i<j} 0.5 * ||p_i - p_j||_1`` over pairs of models.
    """
    columns = ["model", "image", "magnitude", *PROBABILITY_COLUMNS]
    rows = pd.concat([
        frame.loc[frame["draw"] == 0, columns],
        clean.loc[clean["image"].isin(subset)].assign(magnitude=0.0)[columns],
    ]).sort_values(["image", "magnitude"], kind="stable")
    by_model = [rows[rows["model"] == model] for model in models]
    p = np.stack([part[list(PROBABILITY_COLUMNS)].to_numpy(np.float64) for part in by_model])
    pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))]
    score = sum(0.5 * np.abs(p[i] - p[j]).sum(axis=1) for i, j in pairs) / len(pairs)
    per_image = pd.Series(score).groupby(by_model[0]["image"].to_numpy()).max()
    return per_image.sort_values(ascending=False, kind="stable").index.to_numpy(np.int64)[:k]

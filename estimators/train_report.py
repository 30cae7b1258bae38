r"""Tables and plots of a training run (``glep report train.h5``).

Per run (the adjoint-trained reference first): the final minibatch (training) loss, the final
validation loss ``C`` and its relative gap ``|C − C_adjoint| / C_adjoint`` to the reference run's, the
final validation accuracy (classification tasks), and, when the run recorded it
(``training.alignment = true``), the gradient alignment over training: the minimum and median over the
updates of the cosine ``cos(ĝ, g)`` and of the relative error ``‖ĝ − g‖/‖g‖`` between the run's minibatch
gradient ``ĝ`` and the reference gradient ``g`` at the run's own parameters on the same minibatch.

Plots (PNG): ``learning_curves.png`` (:func:`glep.estimators.train.plot_curves`) and ``alignment.png``
(:func:`plot_alignment`: cosine and relative error against the update, one line per estimator).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from glep.errors import InputError
from glep.estimators.train import FORMAT, History

ALIGNMENT_PLOT = "alignment.png"
COLUMNS = ("run", "final train loss", "final validation loss", "gap to adjoint", "accuracy", "cosine min",
           "cosine median", "rel. error median", "rel. error max")


@dataclass
class TrainingFile:
    """A ``train.h5`` (or ``checkpoint.h5``) as read back: the configuration, the updates done, the histories."""

    path: Path
    config: object
    step: int
    histories: dict[str, History]


def is_train_file(path: str | Path) -> bool:
    """True if ``path`` is an HDF5 file written by ``glep train`` (its ``format`` attribute says so)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


def load_train_file(path: str | Path) -> TrainingFile:
    """Read a training file (:class:`InputError` naming it if it is missing, damaged or not one)."""
    import h5py

    from glep.train_config import train_config

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InputError(f"{path} is not a glep train file")
            config = train_config(json.loads(f.attrs["config"]))
            names = json.loads(f.attrs["runs"])
            histories = {name: History.from_arrays({k: v[()] for k, v in f[f"runs/{name}/history"].items()})
                         for name in names}
            return TrainingFile(path, config, int(f.attrs["step"]), histories)
    except (OSError, KeyError) as exc:
        raise InputError(f"cannot read {path} as a glep train file ({exc})") from exc


def rows(data: TrainingFile) -> list[dict]:
    """One dict per run with the values of :data:`COLUMNS` (NaN where a value does not apply)."""
    ref = data.histories["adjoint"].validation_loss[-1]
    out = []
    for name, h in data.histories.items():
        cos, err = np.asarray(h.alignment_cosine), np.asarray(h.alignment_error)
        final = h.validation_loss[-1]
        out.append({"run": name, "final train loss": h.train_loss[-1] if h.train_loss else np.nan,
                    "final validation loss": final,
                    "gap to adjoint": abs(final - ref) / ref if ref else np.nan,
                    "accuracy": h.accuracy[-1],
                    "cosine min": np.nanmin(cos) if cos.size else np.nan,
                    "cosine median": np.nanmedian(cos) if cos.size else np.nan,
                    "rel. error median": np.nanmedian(err) if err.size else np.nan,
                    "rel. error max": np.nanmax(err) if err.size else np.nan})
    return out


def _cell(key: str, value) -> str:
    if isinstance(value, str):
        return value
    if not np.isfinite(value):
        return "–"
    if key == "accuracy":
        return f"{value:.0%}"
    if key.startswith("cosine"):
        return f"{value:.10f}"
    return f"{value:.4g}" if "loss" in key else f"{value:.2e}"


def markdown(data: TrainingFile) -> str:
    """The Markdown table of :func:`rows`, headed by the task, optimizer and updates done."""
    cfg = data.config
    head = (f"## {cfg.name}: task {cfg.task.name}, {cfg.optimizer.name} (learning rate "
            f"{cfg.optimizer.learning_rate:g}), {data.step} of {cfg.training.iterations} updates of "
            f"{cfg.training.batch_size} sequences\n")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows(data):
        lines.append("| " + " | ".join(_cell(k, row[k]) for k in COLUMNS) + " |")
    return head + "\n" + "\n".join(lines)


def to_csv(data: TrainingFile) -> str:
    """The table of :func:`rows` as CSV (full precision; empty cells where a value does not apply)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows(data):
        writer.writerow([row[k] if isinstance(row[k], str) or np.isfinite(row[k]) else "" for k in COLUMNS])
    return buf.getvalue()


def plot_alignment(histories: dict[str, History], path, title: str = "") -> None:
    """``cos(ĝ, g)`` and ``‖ĝ − g‖/‖g‖`` (log scale) against the update, one line per estimator run that
    recorded them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (name, h) in enumerate(histories.items()):
        if name == "adjoint" or not h.alignment_cosine:
            continue
        s = np.arange(1, len(h.alignment_cosine) + 1)
        axes[0].plot(s, h.alignment_cosine, marker="o", ms=3, color=f"C{i}", label=name)
        err = np.asarray(h.alignment_error)
        axes[1].semilogy(s, np.where(err > 0, err, np.nan), marker="o", ms=3, color=f"C{i}", label=name)
    axes[0].set(xlabel="update", ylabel="cos(ĝ, g)", ylim=(-1.05, 1.05),
                title="alignment with the reference gradient at θ")
    axes[1].set(xlabel="update", ylabel="‖ĝ − g‖ / ‖g‖", title="relative error")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def has_alignment(histories: dict[str, History]) -> bool:
    return any(h.alignment_cosine for name, h in histories.items() if name != "adjoint")


def plot_training(data: TrainingFile, folder: str | Path) -> list[Path]:
    """``learning_curves.png`` and (if recorded) ``alignment.png`` into ``folder`` (created if needed)."""
    from glep.estimators.train import PLOT, plot_curves

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = {name: SimpleNamespace(history=h) for name, h in data.histories.items()}
    plot_curves(runs, folder / PLOT, data.config)
    written = [folder / PLOT]
    if has_alignment(data.histories):
        plot_alignment(data.histories, folder / ALIGNMENT_PLOT, _title(data.config))
        written.append(folder / ALIGNMENT_PLOT)
    return written


def _title(config) -> str:
    return f"{config.name}: task {config.task.name}, {config.optimizer.name}, batch {config.training.batch_size}"


__all__ = ["ALIGNMENT_PLOT", "TrainingFile", "has_alignment", "is_train_file", "load_train_file", "markdown",
           "plot_alignment", "plot_training", "rows", "to_csv"]

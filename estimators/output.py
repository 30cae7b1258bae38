"""Writing comparison reports: HDF5 (h5py) and a PNG of error versus β (matplotlib)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import h5py
import numpy as np

from glep.estimators.compare import Report, Row
from glep.io import write_trajectory


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import dolfinx
    import scipy
    from petsc4py import PETSc

    import glep

    return {"glep": glep.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "h5py": h5py.__version__, "dolfinx": dolfinx.__version__,
            "petsc": ".".join(map(str, PETSc.Sys.getVersion())), "python": platform.python_version()}


def save_report(report: Report, path: str | Path, config: dict, trajectories: dict | None = None,
                library_versions: dict | None = None) -> None:
    """Write the report, its configuration and versions (as attributes) to HDF5.

    Under MPI, call :func:`versions` on every rank first and pass it here:
    importing PETSc is collective, so it must not happen on rank 0 alone.
    """
    with h5py.File(path, "w") as f:
        f.attrs["config"] = json.dumps(config, default=str)
        for k, v in (library_versions or versions()).items():
            f.attrs[f"version_{k}"] = v
        f.attrs["problem"] = report.problem_name
        f.attrs["report_nudge"] = report.report_nudge
        f.attrs["report_beta"] = report.report_beta
        f.attrs["forward_time"] = report.forward_time
        f.create_dataset("betas", data=report.betas)
        f.attrs["nudges"] = json.dumps(report.nudges)
        tg = f.create_group("truth")
        tg.attrs["wall_time"] = report.truth.wall_time
        tg.attrs["passes"] = report.truth.passes
        for k, v in report.truth.theta.items():
            tg.create_dataset(k, data=v)
        eg = f.create_group("estimators")
        eg.attrs["order"] = json.dumps([r.name for r in report.rows])
        for r in report.rows:
            g = eg.create_group(r.name)
            g.attrs["label"] = r.label
            g.attrs["exact"] = r.exact
            g.attrs["passes"] = r.passes
            g.attrs["wall_time"] = r.wall_time
            g.attrs["loss"] = r.loss
            g.attrs["notes"] = json.dumps(r.notes)
            g.attrs["metrics"] = json.dumps(r.metrics)
            g.attrs["slopes"] = json.dumps(r.slopes)
            for nudge, errs in r.errors.items():
                g.create_dataset(f"errors/{nudge}", data=np.asarray(errs))
            est = report.estimates.get(r.name)
            if est is not None:
                for k, v in est.theta.items():
                    g.create_dataset(f"gradient/{k}", data=v)
        if trajectories:
            tr = f.create_group("trajectories")
            for name, traj in trajectories.items():
                write_trajectory(tr.create_group(name), traj)


def load_report(path: str | Path) -> Report:
    """Re-read a report saved by :func:`save_report` (without re-running anything)."""
    from glep.estimators.result import GradientEstimate

    with h5py.File(path, "r") as f:
        tg = f["truth"]
        truth = GradientEstimate("adjoint", {k: np.asarray(v) for k, v in tg.items()},
                                 passes=float(tg.attrs.get("passes", 0.0)),
                                 wall_time=float(tg.attrs.get("wall_time", 0.0)))
        rows = []
        eg = f["estimators"]
        for name in json.loads(eg.attrs["order"]):
            g = eg[name]
            errors = {k: list(np.asarray(v)) for k, v in g["errors"].items()} if "errors" in g else {}
            rows.append(Row(name, str(g.attrs["label"]), bool(g.attrs["exact"]), json.loads(g.attrs["metrics"]),
                            json.loads(g.attrs["slopes"]), errors, float(g.attrs["passes"]),
                            float(g.attrs["wall_time"]), str(g.attrs["loss"]), json.loads(g.attrs["notes"])))
        return Report(str(f.attrs["problem"]), np.asarray(f["betas"]), json.loads(f.attrs["nudges"]),
                      str(f.attrs["report_nudge"]), float(f.attrs["report_beta"]), truth,
                      float(f.attrs["forward_time"]), rows)


def plot_report(report: Report, path: str | Path) -> None:
    """Relative error versus β for every estimator and nudging scheme (log–log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"one-sided": "--", "centred": "-", "complex": ":"}
    for i, r in enumerate(report.rows):
        for nudge, errs in r.errors.items():
            e = np.maximum(np.asarray(errs, dtype=float), 1e-17)
            ax.loglog(report.betas, e, styles.get(nudge, "-"), marker="o", ms=3, color=f"C{i}",
                      label=f"{r.label} ({nudge}, slope {r.slopes.get(nudge, float('nan')):.2f})")
    ax.set_xlabel("β")
    ax.set_ylabel("relative error vs discrete adjoint")
    ax.set_title(report.problem_name)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

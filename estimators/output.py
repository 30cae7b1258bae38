r"""Comparison reports on disk: ``results.h5`` (h5py) and a PNG of error versus β (matplotlib).

The pair is written atomically by :func:`write_results`: both files are
written to temporary files in the output folder (``.results.h5.<pid>.*.tmp``,
``.error_vs_beta.png.<pid>.*.tmp``), flushed to disk, then renamed into place
with ``os.replace`` — the PNG first, ``results.h5`` last.  An interrupted
write (SIGINT, SIGTERM, SIGKILL, a full disk) therefore leaves the previous
``results.h5`` intact or the new one complete, never a partial file.  The
temporary files are removed on every exit but SIGKILL (its leftovers are
hidden, never named like results, and removed by the next write).  Each
write has a run id (a UUID) stored in ``results.h5`` and repeated in the
PNG's text metadata; only a kill between the two renames leaves a new PNG
next to the previous ``results.h5``, which :func:`plot_mismatch` detects.

A results file carries ``glep_format = "glep-results/1"``; :func:`load_report`
refuses any other file with :class:`~glep.errors.InputError` naming why.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from glep.errors import GlepError, InputError
from glep.estimators.compare import Report, Row
from glep.io import write_trajectory

FORMAT = "glep-results/1"
RESULTS = "results.h5"
PLOT = "error_vs_beta.png"
#: the PNG text-metadata key holding the run id
RUN_ID_KEY = "glep_run_id"
_REQUIRED = ("betas", "truth", "estimators")


class ResultsWriteError(GlepError, OSError):
    """The results could not be written (folder not writable, disk full...); the previous ones are kept."""


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import dolfinx_solver  # noqa: F401  isort: skip  (configures PETSc before dolfinx/petsc4py load)
    import dolfinx
    import scipy
    from petsc4py import PETSc

    import glep

    return {"glep": glep.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "h5py": h5py.__version__, "dolfinx": dolfinx.__version__,
            "petsc": ".".join(map(str, PETSc.Sys.getVersion())), "python": platform.python_version()}


# -- writing ------------------------------------------------------------------------------------
def _write_row(eg: h5py.Group, r: Row, report: Report) -> None:
    g = eg.create_group(r.name)
    g.attrs["label"] = r.label
    g.attrs["exact"] = r.exact
    g.attrs["passes"] = r.passes
    g.attrs["wall_time"] = r.wall_time
    g.attrs["loss"] = r.loss
    g.attrs["notes"] = json.dumps(r.notes)
    g.attrs["metrics"] = json.dumps(r.metrics)
    g.attrs["slopes"] = json.dumps(r.slopes)
    g.attrs["status"] = r.status
    g.attrs["reason"] = r.reason
    g.attrs["detail"] = r.detail
    g.attrs["point_failures"] = json.dumps(r.point_failures)
    for nudge, errs in r.errors.items():
        g.create_dataset(f"errors/{nudge}", data=np.asarray(errs, dtype=float))
    est = report.estimates.get(r.name)
    if est is not None:
        for k, v in est.theta.items():
            g.create_dataset(f"gradient/{k}", data=v)


def save_report(report: Report, path: str | Path, config: dict, trajectories: dict | None = None,
                library_versions: dict | None = None, *, run_id: str | None = None,
                checkpoint: Callable[[str], None] | None = None) -> None:
    """Write the report, its configuration and versions (as attributes) to HDF5 at ``path``.

    This writes ``path`` in place; :func:`write_results` is the atomic way.
    Under MPI, call :func:`versions` on every rank first and pass it here:
    importing PETSc is collective, so it must not happen on rank 0 alone.
    ``checkpoint`` (tests) is called with a stage name part-way through.
    """
    with h5py.File(path, "w") as f:
        f.attrs["glep_format"] = FORMAT
        f.attrs["run_id"] = run_id or uuid.uuid4().hex
        f.attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
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
        tg.attrs["loss"] = report.truth.loss
        for k, v in report.truth.theta.items():
            tg.create_dataset(k, data=v)
        eg = f.create_group("estimators")
        eg.attrs["order"] = json.dumps([r.name for r in report.rows])
        for r in report.rows:
            _write_row(eg, r, report)
        if checkpoint is not None:
            checkpoint("results partly written")
        if trajectories:
            tr = f.create_group("trajectories")
            for name, traj in trajectories.items():
                write_trajectory(tr.create_group(name), traj)


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk; folders on file systems that refuse are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _temp_path(target: Path) -> Path:
    """An empty new file ``.<name>.<pid>.<random>.tmp`` next to ``target`` (never a results name)."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    try:  # mkstemp creates 0600: give the results the permissions an ordinary open() would (0666 & ~umask)
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(out_dir: str | Path) -> list[Path]:
    """Remove temporary files left in ``out_dir`` by a killed writer (its process no longer exists)."""
    removed = []
    for name in (RESULTS, PLOT):
        for tmp in Path(out_dir).glob(f".{name}.*.tmp"):
            pid = tmp.name[len(name) + 2:].split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def _terminate_as_exit():
    """While writing, SIGTERM exits through Python (status 143) so that temporary files are removed.

    Only where SIGTERM still has its default action (it would kill the
    process outright) and in the main thread (where handlers can be set);
    the previous handler is restored afterwards.
    """
    def exit_143(signum, frame):
        raise SystemExit(128 + signal.SIGTERM)

    try:
        previous = signal.getsignal(signal.SIGTERM)
        replace = previous == signal.SIG_DFL and threading.current_thread() is threading.main_thread()
    except (ValueError, AttributeError):  # no SIGTERM on this platform
        replace = False
    if replace:
        signal.signal(signal.SIGTERM, exit_143)
    try:
        yield
    finally:
        if replace:
            signal.signal(signal.SIGTERM, previous)


def write_results(out_dir: str | Path, report: Report, config: dict, trajectories: dict | None = None,
                  library_versions: dict | None = None, *,
                  checkpoint: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """Write ``results.h5`` and ``error_vs_beta.png`` to ``out_dir`` atomically, as a pair.

    Both are written to temporary files in ``out_dir``, flushed, and renamed
    into place, the PNG first and ``results.h5`` last; both carry the same new
    run id (``report.run_id`` is set to it).  On any failure or interrupt
    the temporary files are removed and the previous results stay as they
    were; a writer killed outright leaves a hidden ``.*.tmp`` file, removed by
    the next write.  ``checkpoint`` (tests) is called with each stage's name.

    Raises
    ------
    ResultsWriteError
        (a :class:`~glep.errors.GlepError` and an ``OSError``) if the folder
        cannot be created or written.

    Returns
    -------
    (results path, plot path)
    """
    out_dir = Path(out_dir)
    h5, png = out_dir / RESULTS, out_dir / PLOT
    step = checkpoint or (lambda stage: None)
    run_id = uuid.uuid4().hex
    temps: list[Path] = []
    with _terminate_as_exit():
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(out_dir)
            temps.append(_temp_path(png))
            temps.append(_temp_path(h5))
            tmp_png, tmp_h5 = temps
            step("start")
            plot_report(report, tmp_png, run_id=run_id)
            _fsync(tmp_png)
            step("plot written")
            save_report(report, tmp_h5, config, trajectories, library_versions, run_id=run_id, checkpoint=step)
            _fsync(tmp_h5)
            step("results written")
            os.replace(tmp_png, png)
            step("plot replaced")
            os.replace(tmp_h5, h5)
            _fsync(out_dir)
        except BaseException as exc:
            for tmp in temps:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            if isinstance(exc, OSError) and not isinstance(exc, GlepError):
                raise ResultsWriteError(f"cannot write the results to {out_dir}: {exc.strerror or exc}"
                                        + (f" ({exc.filename})" if exc.filename else "")
                                        + "; the previous results there, if any, are unchanged") from exc
            raise
    report.run_id = run_id
    step("done")
    return h5, png


# -- reading ------------------------------------------------------------------------------------
def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _why_not_results(f: h5py.File) -> str | None:
    """Why the open HDF5 file ``f`` is not a glep results file (None if it is one)."""
    fmt = f.attrs.get("glep_format")
    if fmt is None:
        if "trajectories" in f and "estimators" not in f:
            return "a glep trajectory file, not a results file"
        if "estimators" in f and "truth" in f:
            return "written by an older glep, without 'glep_format'; run glep compare again"
        return "no 'glep_format' attribute: not written by glep compare"
    if _text(fmt) != FORMAT:
        return f"format {_text(fmt)!r}; this glep reads {FORMAT!r}"
    missing = [k for k in _REQUIRED if k not in f]
    if missing:
        return f"missing {', '.join(repr(k) for k in missing)}"
    return None


def _read_row(name: str, g: h5py.Group) -> Row:
    errors = {k: list(np.asarray(v, dtype=float)) for k, v in g["errors"].items()} if "errors" in g else {}
    return Row(name, _text(g.attrs["label"]), bool(g.attrs["exact"]), json.loads(g.attrs["metrics"]),
               json.loads(g.attrs["slopes"]), errors, float(g.attrs["passes"]), float(g.attrs["wall_time"]),
               _text(g.attrs["loss"]), json.loads(g.attrs["notes"]), status=_text(g.attrs["status"]),
               reason=_text(g.attrs["reason"]), detail=_text(g.attrs["detail"]),
               point_failures=json.loads(g.attrs["point_failures"]))


def _read(f: h5py.File) -> Report:
    from glep.estimators.result import GradientEstimate

    tg = f["truth"]
    truth = GradientEstimate("adjoint", {k: np.asarray(v) for k, v in tg.items()},
                             passes=float(tg.attrs.get("passes", 0.0)), wall_time=float(tg.attrs.get("wall_time", 0.0)))
    if "loss" in tg.attrs:  # files written before the truth's loss was stored: the default (C_h of the CIVP)
        truth.loss = _text(tg.attrs["loss"])
    eg = f["estimators"]
    rows = [_read_row(name, eg[name]) for name in json.loads(eg.attrs["order"])]
    return Report(_text(f.attrs["problem"]), np.asarray(f["betas"], dtype=float), json.loads(f.attrs["nudges"]),
                  _text(f.attrs["report_nudge"]), float(f.attrs["report_beta"]), truth,
                  float(f.attrs["forward_time"]), rows, run_id=_text(f.attrs["run_id"]))


def load_report(path: str | Path) -> Report:
    """Re-read a report written by :func:`write_results` or :func:`save_report` (nothing re-run).

    Raises
    ------
    glep.errors.InputError
        ``"<path> is not a glep results file (<why>)"`` for an empty,
        truncated or damaged file, a file that is not HDF5, an HDF5 file not
        written by glep compare (no ``glep_format`` attribute), a glep
        trajectory file, or a results file with missing parts.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"path {str(path)!r} does not exist")

    def bad(why: str) -> InputError:
        return InputError(f"{path} is not a glep results file ({why})")

    if path.is_dir():
        raise bad(f"it is a folder; glep compare writes {path / RESULTS}")
    if path.stat().st_size == 0:
        raise bad("empty file")
    if not h5py.is_hdf5(path):
        raise bad("not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise bad(f"truncated or damaged HDF5 file: {' '.join(str(exc).split())}") from exc
    with f:
        why = _why_not_results(f)
        if why:
            raise bad(why)
        try:
            return _read(f)
        except (KeyError, ValueError, TypeError, OSError, json.JSONDecodeError) as exc:
            raise bad(f"unreadable part: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc


def png_run_id(path: str | Path) -> str | None:
    """The run id in a PNG's text metadata (None if absent or unreadable)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.text.get(RUN_ID_KEY)
    except (OSError, UnidentifiedImageError, AttributeError):
        return None


def plot_mismatch(results_path: str | Path, report: Report) -> str | None:
    """A warning if the PNG next to ``results_path`` is not from the same run (None if it is, or absent)."""
    png = Path(results_path).parent / PLOT
    if not png.exists() or not report.run_id:
        return None
    other = png_run_id(png)
    if other == report.run_id:
        return None
    return (f"{png} is not from the run in {results_path} (run id {other or 'missing'}, results "
            f"{report.run_id}): redraw it with `glep report {results_path} --plot {png}`")


# -- plotting -----------------------------------------------------------------------------------
def plot_report(report: Report, path: str | Path, run_id: str | None = None) -> None:
    """Relative error versus β for every estimator and nudging scheme (log–log).

    Failed β points are gaps in the curves; a failed estimator is named in the
    legend.  The PNG's text metadata carries ``glep_run_id`` (``run_id``, or
    the report's).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"one-sided": "--", "centred": "-", "complex": ":"}
    for i, r in enumerate(report.rows):
        for nudge, errs in r.errors.items():
            e = np.maximum(np.asarray(errs, dtype=float), 1e-17)
            if not np.any(np.isfinite(e)):
                continue
            label = f"{r.label} ({nudge}, slope {r.slopes.get(nudge, float('nan')):.2f})"
            lost = sum(p["nudge"] == nudge for p in r.point_failures)
            if lost:
                label += f", {lost} β failed"
            ax.loglog(report.betas, e, styles.get(nudge, "-"), marker="o", ms=3, color=f"C{i}",
                      label=label + (" FAILED" if r.failed else ""))
        if r.failed:
            ax.plot([], [], " ", label=f"{r.label}: FAILED ({r.reason[:60]})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("β")
    ax.set_ylabel("relative error vs discrete adjoint")
    ax.set_title(report.problem_name)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    rid = run_id or report.run_id
    fig.savefig(path, dpi=120, format="png", metadata={RUN_ID_KEY: rid} if rid else None)
    plt.close(fig)

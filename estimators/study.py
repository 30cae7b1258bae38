r"""The results file of a study (``glep sweep``): one HDF5 file, items committed so that none is ever lost.

Design: a journal of per-item files, merged atomically into the one file
-----------------------------------------------------------------------
HDF5 is not crash-safe mid-write: a process killed while it writes into a file can leave the whole
file unreadable, so the study file is never written in place.  Each finished work item is first
written to its own small HDF5 file in the journal folder ``<study>.journal/`` — to a hidden temporary
file, flushed (``fsync``), then renamed into place with ``os.replace``, which is atomic: a journal
entry exists complete or not at all.  That makes an item durable the moment it finishes, at a cost
that does not grow with the study (one small file).  Every ``commit_interval`` seconds, and at the
end, the journal is *merged*: the study file is copied to a temporary file, the journal entries are
copied into it, it is flushed and renamed over the study file, and only then are the merged entries
removed.  A kill at any moment leaves the previous study file or the new one, plus journal entries
that are either not yet merged or merged already (skipped when seen again): no finished item is lost,
none is stored twice, nothing is half-written.

The alternative — rewriting the whole file after every item — costs ``O(file size)`` per item
(quadratic in the number of items) and still loses the items finished since the last rewrite when
batched; the journal has neither cost nor loss.  The merge copies the file (``O(file size)``), but
only every ``commit_interval`` seconds, so its share of the run time is bounded
(``benchmarks/bench_sweep.py`` measures it).

Reading (:func:`load_study`) sees the file and the journal together, so ``glep report`` shows every
finished item even of a run that was killed before it merged.

Layout (``glep_format = "glep-study/1"``; ``schema_version = 1``)
-----------------------------------------------------------------
======================================  ==================================================================
attributes of ``/``                     ``glep_format``, ``schema_version``, ``name``, ``created``,
                                        ``study`` (the validated configuration, JSON), ``study_sha256``,
                                        ``items_total``, ``version_<library>`` (glep, numpy, scipy, h5py,
                                        petsc4py, dolfinx, mpi4py, python), ``machine_platform``,
                                        ``machine_hostname``, ``mpi_size``, ``mpi_group_size``,
                                        ``runs`` (JSON: one entry per start or resume, with its layout)
``items/<id>``                          one finished work item; attributes ``id``, ``index``, ``status``
                                        (``ok``/``failed``) and ``record`` (JSON: ``params`` of the item,
                                        ``reason``, ``label``, ``loss``, ``exact``, ``passes``,
                                        ``wall_time``, ``item_time``, ``forward_time``,
                                        ``parameter_count``, ``metrics``, ``slopes``, ``notes``,
                                        ``point_failures``, ``rank``)
``items/<id>/betas``                    the β grid of the bias curves
``items/<id>/errors``                   relative error to the row's ground truth, one row per nudge
                                        (attribute ``nudges``), one column per β (NaN: failed)
``items/<id>/gradient``, ``truth``      the estimate at the report's β and its ground truth, parameter
                                        arrays end to end (attribute ``layout``: names and shapes)
======================================  ==================================================================

Item ids are ``<index>-<estimator>``, the index of the item in the study's expansion (zero-padded), so
the file's order is the configuration's, never the order in which items finished.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from glep.errors import GlepError, InputError

FORMAT = "glep-study/1"
SCHEMA_VERSION = 1
#: item attributes that depend on the run (timings, which rank), not on the study
TIMING_KEYS = ("wall_time", "item_time", "forward_time", "rank")

Checkpoint = Callable[[str], None]


class StudyWriteError(GlepError, OSError):
    """The study file or its journal could not be written; what was committed before is unchanged."""


# -- small file-system helpers ------------------------------------------------------------------
def _fsync(path: Path) -> None:
    """Flush a file or a folder's entries to disk (folders on file systems that refuse are skipped)."""
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


def _temp_next_to(target: Path) -> Path:
    """A new empty hidden file ``.<name>.<pid>.<random>.tmp`` next to ``target``."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove ``.<prefix>*.<pid>.*.tmp`` files whose writer no longer runs."""
    for tmp in folder.glob(f".{prefix}*.tmp"):
        parts = tmp.name.split(".")
        pid = parts[-3] if len(parts) >= 4 else ""
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def _atomic(target: Path, durable: bool = True):
    """Yield a temporary path next to ``target``; on success rename it over ``target`` (``os.replace``).

    ``durable``: flush the file and the folder to disk first (survives power loss, not only a kill).
    """
    tmp = _temp_next_to(target)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, target)
        if durable:
            _fsync(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _write_error(exc: OSError, what: str) -> StudyWriteError:
    return StudyWriteError(f"cannot write {what}: {exc.strerror or exc}"
                           + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")
                           + "; the items committed before are unchanged")


# -- one item ---------------------------------------------------------------------------------------
#: the scalar fields of an item, stored together as the JSON attribute ``record``
_RECORD = ("status", "reason", "detail", "label", "loss", "exact", "passes", "wall_time", "item_time",
           "forward_time", "parameter_count", "rank", "params", "metrics", "slopes", "notes", "point_failures")


def _flat_arrays(arrays: Mapping) -> tuple[np.ndarray, str]:
    """Parameter arrays as one vector and the JSON ``[[name, shape], ...]`` that splits it again."""
    layout = [[k, list(np.shape(v))] for k, v in arrays.items()]
    flat = np.concatenate([np.asarray(v, dtype=float).ravel() for v in arrays.values()]) if arrays else np.zeros(0)
    return flat, json.dumps(layout)


def _split(flat: np.ndarray, layout: str) -> dict[str, np.ndarray]:
    out, at = {}, 0
    for name, shape in json.loads(layout):
        size = int(np.prod(shape)) if shape else 1
        out[name] = flat[at:at + size].reshape(shape)
        at += size
    return out


def write_item(g: h5py.Group, result: Mapping) -> None:
    """Store one work item's result (a dict from :func:`glep.estimators.sweep.run_item`) in group ``g``.

    Few HDF5 objects per item (writing each costs about as much as a small item's arithmetic): the
    attributes ``id``, ``index``, ``status`` and ``record`` (every other scalar, JSON); the datasets
    ``betas``, ``errors`` (one row per nudge, named by its attribute ``nudges``) and ``gradient`` and
    ``truth`` (the parameter arrays end to end, split by their attribute ``layout``).
    """
    g.attrs["id"] = str(result["id"])
    g.attrs["index"] = int(result["index"])
    g.attrs["status"] = str(result.get("status", ""))
    g.attrs["record"] = json.dumps({k: result[k] for k in _RECORD if k in result}, default=float)
    g.create_dataset("betas", data=np.asarray(result.get("betas", []), dtype=float))
    errors = result.get("errors") or {}
    e = g.create_dataset("errors", data=np.asarray([np.asarray(v, dtype=float) for v in errors.values()],
                                                   dtype=float).reshape(len(errors), -1))
    e.attrs["nudges"] = json.dumps(list(errors))
    for sub in ("gradient", "truth"):
        flat, layout = _flat_arrays(result.get(sub) or {})
        d = g.create_dataset(sub, data=flat)
        d.attrs["layout"] = layout


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def read_item(g: h5py.Group) -> dict:
    """The result dict of one stored item (the inverse of :func:`write_item`)."""
    out = json.loads(g.attrs["record"])
    out.update(id=_text(g.attrs["id"]), index=int(g.attrs["index"]), status=_text(g.attrs["status"]))
    out["betas"] = np.asarray(g["betas"], dtype=float)
    errors = np.asarray(g["errors"], dtype=float)
    out["errors"] = {n: errors[i] for i, n in enumerate(json.loads(g["errors"].attrs["nudges"]))}
    for sub in ("gradient", "truth"):
        out[sub] = _split(np.asarray(g[sub], dtype=float), g[sub].attrs["layout"])
    return out


# -- the study file ---------------------------------------------------------------------------------
def _flat(value, prefix: str = "") -> dict[str, object]:
    """``{"systems": [{"n": [4]}]}`` -> ``{"systems[0].n": [4]}`` (lists of scalars kept whole)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}[{i}]"))
        out[f"{prefix} (length)"] = len(value)
        return out
    return {prefix: value}


def config_differences(stored: Mapping, current: Mapping) -> list[str]:
    """The keys whose values differ between two study configurations, one line each."""
    a, b = _flat(dict(stored)), _flat(dict(current))
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            lines.append(f"{key}: {a.get(key, '<absent>')!r} in the file, {b.get(key, '<absent>')!r} now")
    return lines


def _digest(study: Mapping) -> str:
    return hashlib.sha256(json.dumps(study, sort_keys=True).encode()).hexdigest()


def _why_not_study(f: h5py.File) -> str | None:
    fmt = f.attrs.get("glep_format")
    if fmt is None:
        return "no 'glep_format' attribute: not written by glep sweep"
    if _text(fmt) != FORMAT:
        return f"format {_text(fmt)!r}; this glep reads {FORMAT!r} here"
    if "items" not in f:
        return "missing 'items'"
    return None


def is_study_file(path: str | Path) -> bool:
    """True if ``path`` is an HDF5 file written by ``glep sweep`` (its ``glep_format`` says so)."""
    try:
        with h5py.File(path, "r") as f:
            return _text(f.attrs.get("glep_format", "")) == FORMAT
    except OSError:
        return False


@dataclass
class StudyStore:
    """The writer's handle on a study file and its journal (rank 0 only; see the module docstring).

    Create or reopen with :meth:`open`; :meth:`record` makes one finished item durable,
    :meth:`commit` merges the journal into the file.  ``checkpoint`` (tests) is called with a stage
    name at each step where a kill must be survived.
    """

    path: Path
    checkpoint: Checkpoint = field(default=lambda stage: None, repr=False)
    committed: set[str] = field(default_factory=set)
    journaled: set[str] = field(default_factory=set)

    @property
    def journal(self) -> Path:
        return journal_folder(self.path)

    @property
    def finished(self) -> set[str]:
        """Ids of every finished item (committed or in the journal)."""
        return self.committed | self.journaled

    @classmethod
    def open(cls, path: str | Path, study: Mapping, meta: Mapping, items_total: int, *, resume: bool,
             checkpoint: Checkpoint | None = None) -> StudyStore:
        """Create the study file at ``path``, or reopen it with ``resume``.

        ``study`` is the configuration the results depend on; ``meta`` the versions, machine and MPI
        layout of this run (attributes ``version_*``, ``machine_*``, ``mpi_*``), appended to ``runs``.
        Raises :class:`InputError` if the file exists without ``resume``, is not a study file, or was
        started with another configuration (naming every key that differs).
        """
        path = Path(path)
        store = cls(path, checkpoint or (lambda stage: None))
        if path.is_dir():
            raise InputError(f"run.output: {str(path)!r} is a folder; give the path of the study's .h5 file")
        exists = path.exists()
        if exists and not resume:
            raise InputError(f"run.output: {path} exists; pass --resume to continue that study, or choose "
                             "another output")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            store.journal.mkdir(exist_ok=True)
        except OSError as exc:
            raise InputError(f"run.output: cannot create {exc.filename} ({exc.strerror})") from exc
        run = {"started": _now(), **{k: meta[k] for k in ("mpi_size", "mpi_group_size", "machine_hostname")
                                     if k in meta}}
        if exists:
            store._check_resumable(study)
            store._scan_journal()
            store.commit(run=run)
        else:
            store._create(study, meta, items_total, run)
        return store

    def _create(self, study: Mapping, meta: Mapping, items_total: int, run: dict) -> None:
        _remove_stale(self.path.parent, self.path.name)
        try:
            with _atomic(self.path) as tmp:
                with h5py.File(tmp, "w") as f:
                    f.attrs["glep_format"] = FORMAT
                    f.attrs["schema_version"] = SCHEMA_VERSION
                    f.attrs["name"] = str(study.get("name", ""))
                    f.attrs["created"] = _now()
                    f.attrs["study"] = json.dumps(study, sort_keys=True)
                    f.attrs["study_sha256"] = _digest(study)
                    f.attrs["items_total"] = int(items_total)
                    for key, value in meta.items():
                        f.attrs[key] = value
                    f.attrs["runs"] = json.dumps([run])
                    f.create_group("items")
        except OSError as exc:
            raise _write_error(exc, str(self.path)) from exc

    def _check_resumable(self, study: Mapping) -> None:
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise InputError(f"--resume: {self.path} is not a readable HDF5 file ({' '.join(str(exc).split())})") \
                from exc
        with f:
            why = _why_not_study(f)
            if why:
                raise InputError(f"--resume: {self.path} is not a glep study file ({why})")
            stored = json.loads(f.attrs["study"])
            self.committed = set(f["items"])
        diff = config_differences(stored, study)
        if diff:
            raise InputError(f"--resume: the configuration changed since {self.path} was started; these keys "
                             "differ:\n  " + "\n  ".join(diff) + "\nrestore them, or start a new study "
                             "(another run.output)")

    def _scan_journal(self) -> None:
        _remove_stale(self.journal, "")
        for entry in sorted(self.journal.glob("*.h5")):
            try:
                with h5py.File(entry, "r") as f:
                    item_id = _text(f.attrs["id"])
            except (OSError, KeyError):
                entry.unlink()  # cannot happen after an atomic rename; a damaged disk: the item is redone
                continue
            self.journaled.add(item_id)

    def record(self, result: Mapping) -> None:
        """Make one finished item durable: its journal entry, written atomically."""
        item_id = str(result["id"])
        target = self.journal / f"{item_id}.h5"
        try:
            with _atomic(target, durable=False) as tmp:  # flushed to disk by the next commit
                with h5py.File(tmp, "w") as f:
                    write_item(f["/"], result)
                self.checkpoint("journal entry written")
        except OSError as exc:
            raise _write_error(exc, f"the journal entry {target}") from exc
        self.journaled.add(item_id)
        self.checkpoint("item recorded")

    def commit(self, run: dict | None = None) -> int:
        """Merge the journal into the study file atomically; return the number of items merged."""
        pending = sorted(self.journaled - self.committed)
        stale = sorted(self.journaled & self.committed)  # merged by a commit killed before it cleaned up
        if not pending and run is None:
            self._drop(stale)
            return 0
        _remove_stale(self.path.parent, self.path.name)
        try:
            with _atomic(self.path) as tmp:
                shutil.copyfile(self.path, tmp)
                with h5py.File(tmp, "a") as f:
                    items = f["items"]
                    for i, item_id in enumerate(pending):
                        with h5py.File(self.journal / f"{item_id}.h5", "r") as src:
                            src.copy(src["/"], items, name=item_id)
                        if i == 0:
                            self.checkpoint("commit partly written")
                    if run is not None:
                        f.attrs["runs"] = json.dumps([*json.loads(f.attrs["runs"]), run])
                self.checkpoint("commit written")
        except OSError as exc:
            raise _write_error(exc, str(self.path)) from exc
        self.committed |= set(pending)
        self.checkpoint("commit replaced")
        self._drop(pending + stale)
        return len(pending)

    def _drop(self, ids: list[str]) -> None:
        for item_id in ids:
            with contextlib.suppress(FileNotFoundError):
                (self.journal / f"{item_id}.h5").unlink()
        self.journaled -= set(ids)


def journal_folder(path: Path) -> Path:
    """The journal folder of the study file ``path``: ``<path>.journal``."""
    return path.with_name(path.name + ".journal")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# -- reading ------------------------------------------------------------------------------------------
@dataclass
class Study:
    """A study read back: its attributes, configuration and finished items (file and journal)."""

    path: Path
    attrs: dict
    study: dict
    items: dict[str, dict]

    @property
    def complete(self) -> bool:
        return len(self.items) == int(self.attrs.get("items_total", -1))


def load_study(path: str | Path) -> Study:
    """Read a study file and its journal (nothing re-run).

    Raises :class:`InputError` for a missing, damaged or foreign file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"path {str(path)!r} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path} is not a glep study file (not a readable HDF5 file: "
                         f"{' '.join(str(exc).split())})") from exc
    with f:
        why = _why_not_study(f)
        if why:
            raise InputError(f"{path} is not a glep study file ({why})")
        attrs = {k: (_text(v) if isinstance(v, (str, bytes)) else v.item() if hasattr(v, "item") else v)
                 for k, v in f.attrs.items()}
        items = {name: read_item(g) for name, g in f["items"].items()}
    journal = journal_folder(path)
    for entry in sorted(journal.glob("*.h5")) if journal.is_dir() else []:
        with contextlib.suppress(OSError, KeyError), h5py.File(entry, "r") as g:
            items.setdefault(_text(g.attrs["id"]), read_item(g))
    items = dict(sorted(items.items()))
    return Study(path, attrs, json.loads(attrs["study"]), items)


def numbers(study: Study) -> dict[str, dict]:
    """Every computed number of every item, timings and ranks left out: equal for equal studies.

    Two runs of the same study (1 or 2 ranks, interrupted and resumed or not) give equal ``numbers``.
    """
    out = {}
    for item_id, item in study.items.items():
        out[item_id] = {k: v for k, v in item.items() if k not in TIMING_KEYS}
    return out


def same_numbers(a: Mapping, b: Mapping) -> list[str]:
    """Where two :func:`numbers` dicts differ (bitwise, NaN equal to NaN); empty if they are equal."""
    diffs = [f"items only in the first: {sorted(set(a) - set(b))}"] if set(a) - set(b) else []
    if set(b) - set(a):
        diffs.append(f"items only in the second: {sorted(set(b) - set(a))}")
    for item_id in sorted(set(a) & set(b)):
        for key in sorted(set(a[item_id]) | set(b[item_id])):
            x, y = a[item_id].get(key), b[item_id].get(key)
            if not _equal(x, y):
                diffs.append(f"{item_id}.{key}: {x!r} != {y!r}")
    return diffs


def _equal(x, y) -> bool:
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (np.isnan(x) and np.isnan(y))
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_equal(u, v) for u, v in zip(x, y))
    return x == y

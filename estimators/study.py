r"""The results file of a study (``glep sweep``): one HDF5 file, items committed so that none is ever lost.

Design: an append-only journal, merged atomically into the one file
-------------------------------------------------------------------
HDF5 is not crash-safe mid-write: a process killed while it writes into a file can leave the whole
file unreadable, so the study file is never written in place.  Each finished work item is appended,
as one line of JSON written by a single ``write`` call, to the journal ``<study>.journal`` next to
the study file.  That makes an item safe from a kill of the process the moment it finishes, at a cost
that does not grow with the study (no file is created, renamed or removed per item; JSON writes floats
so that they read back bit for bit).  A line cut short by a kill mid-write is incomplete JSON and is
ignored: its item is simply run again.  Every ``commit_interval`` seconds, and at the end, the journal
is *merged*: a new study file is written to a temporary file — the committed items and the journal's
new ones, sorted by item id — flushed (``fsync``) and renamed over the study file (``os.replace``,
atomic), and only then is the journal emptied.  A kill at any moment leaves the previous study file or
the new one, and a journal whose lines are either not yet merged or merged already (skipped when seen
again): no finished item is lost, none is stored twice, nothing is half-written.

Alternatives: rewriting the HDF5 file after every item costs ``O(file size)`` per item (quadratic in the
number of items) and loses the items finished since the last rewrite when batched; one small HDF5 file
per item in a journal folder costs a file creation, a dozen HDF5 objects and a removal per item —
measured at 20–30 ms on the development VM, 15–20 % of a small item.  The merge here rewrites the file
(``O(file size)``) but only every ``commit_interval`` seconds, and writes each column once per merge,
not one HDF5 object per item (``benchmarks/bench_sweep.py`` measures the share of the run it takes).
The file is flushed to disk at each merge; a journal line is on disk once the operating system writes
it back (a power cut, unlike a kill, can lose the journal's tail: those items are run again).

Reading (:func:`load_study`) sees the file and the journal together, so ``glep report`` shows every
finished item even of a run that was killed before it merged.

Layout (``glep_format = "glep-study/1"``; ``schema_version = 1``)
-----------------------------------------------------------------
=====================================  ==================================================================
attributes of ``/``                    ``glep_format``, ``schema_version``, ``name``, ``created``,
                                       ``study`` (the validated configuration, JSON), ``study_sha256``,
                                       ``items_total``, ``version_<library>`` (glep, numpy, scipy, h5py,
                                       petsc4py, slepc4py, dolfinx, mpi4py, python), ``machine_platform``,
                                       ``machine_hostname``, ``mpi_size``, ``mpi_group_size``,
                                       ``runs`` (JSON: one entry per start or resume, with its layout)
``items/id``, ``items/index``          one row per finished item, sorted by id: ``<index>-<estimator>``,
                                       the index of the item in the study's expansion (zero-padded), so
                                       the order is the configuration's, never the order of completion
``items/status``                       ``ok`` or ``failed``
``items/record``                       JSON: the item's ``params``, ``reason``, ``label``, ``loss``,
                                       ``exact``, ``passes``, ``wall_time``, ``item_time``,
                                       ``forward_time``, ``parameter_count``, ``metrics``, ``slopes``,
                                       ``notes``, ``point_failures``, ``rank``, and the layouts below
``items/betas``                        the β grid of the bias curves (one array per row)
``items/errors``                       relative error to the row's ground truth, nudge by nudge
                                       (``error_nudges`` in the record), β by β (NaN: failed)
``items/gradient``, ``items/truth``    the estimate at the report's β and its ground truth, parameter
                                       arrays end to end (``gradient_layout``: names and shapes)
=====================================  ==================================================================
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from glep.errors import GlepError, InputError
from glep.estimators.output import _alive, _fsync
from glep.estimators.output import _temp_path as _temp_next_to

FORMAT = "glep-study/1"
SCHEMA_VERSION = 1
#: item attributes that depend on the run (timings, which rank), not on the study
TIMING_KEYS = ("wall_time", "item_time", "forward_time", "rank")

Checkpoint = Callable[[str], None]


class StudyWriteError(GlepError, OSError):
    """The study file or its journal could not be written; what was committed before is unchanged."""


# -- small file-system helpers ------------------------------------------------------------------
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


# -- one item: encoded as one JSON row (journal line), decoded back to the result dict ---------------------
#: the scalar fields of an item, stored together as the JSON column ``record``
_RECORD = ("reason", "detail", "label", "loss", "exact", "passes", "wall_time", "item_time", "forward_time",
           "parameter_count", "rank", "params", "metrics", "slopes", "notes", "point_failures")
_ARRAYS = ("betas", "errors", "gradient", "truth")


def _layout(arrays: Mapping) -> list:
    return [[k, list(np.shape(v))] for k, v in arrays.items()]


def _concat(arrays) -> list[float]:
    parts = [np.asarray(v, dtype=float).ravel() for v in arrays]
    return np.concatenate(parts).tolist() if parts else []


def _split(flat: np.ndarray, layout: list) -> dict[str, np.ndarray]:
    out, at = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape)) if shape else 1
        out[name] = flat[at:at + size].reshape(shape)
        at += size
    return out


def encode(result: Mapping) -> dict:
    """A result dict (:func:`glep.estimators.sweep.run_item`) as one JSON-able row (floats exact)."""
    record = {k: result[k] for k in _RECORD if k in result}
    errors = result.get("errors") or {}
    record["error_nudges"] = list(errors)
    record["gradient_layout"] = _layout(result.get("gradient") or {})
    record["truth_layout"] = _layout(result.get("truth") or {})
    return {"id": str(result["id"]), "index": int(result["index"]), "status": str(result.get("status", "")),
            "record": json.loads(json.dumps(record, default=float)),
            "betas": _concat([result.get("betas", [])]), "errors": _concat(errors.values()),
            "gradient": _concat((result.get("gradient") or {}).values()),
            "truth": _concat((result.get("truth") or {}).values())}


def decode(row: Mapping) -> dict:
    """The result dict of an encoded row (the inverse of :func:`encode`)."""
    record = dict(row["record"])
    nudges = record.pop("error_nudges")
    out = {**record, "id": row["id"], "index": int(row["index"]), "status": row["status"]}
    out["betas"] = np.asarray(row["betas"], dtype=float)
    errors = np.asarray(row["errors"], dtype=float).reshape(len(nudges), -1) if nudges else np.zeros((0, 0))
    out["errors"] = {n: errors[i] for i, n in enumerate(nudges)}
    out["gradient"] = _split(np.asarray(row["gradient"], dtype=float), record.pop("gradient_layout"))
    out["truth"] = _split(np.asarray(row["truth"], dtype=float), record.pop("truth_layout"))
    out.pop("gradient_layout", None)
    out.pop("truth_layout", None)
    return out


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _read_rows(f: h5py.File) -> list[dict]:
    """The encoded rows of the file's ``items`` columns."""
    g = f["items"]
    if "id" not in g:
        return []
    cols = {k: g[k][()] for k in ("id", "index", "status", "record", *_ARRAYS)}
    return [{"id": _text(cols["id"][i]), "index": int(cols["index"][i]), "status": _text(cols["status"][i]),
             "record": json.loads(_text(cols["record"][i])), **{k: cols[k][i] for k in _ARRAYS}}
            for i in range(len(cols["id"]))]


def _write_rows(g: h5py.Group, rows: list[dict]) -> None:
    """Write the rows as the ``items`` columns (one dataset per column, whatever the number of rows)."""
    text, floats = h5py.string_dtype(), h5py.vlen_dtype(np.float64)
    g.create_dataset("id", data=np.array([r["id"] for r in rows], dtype=object), dtype=text)
    g.create_dataset("index", data=np.array([r["index"] for r in rows], dtype=np.int64))
    g.create_dataset("status", data=np.array([r["status"] for r in rows], dtype=object), dtype=text)
    g.create_dataset("record", data=np.array([json.dumps(r["record"]) for r in rows], dtype=object), dtype=text)
    for key in _ARRAYS:
        column = np.empty(len(rows), dtype=object)
        column[:] = [np.asarray(r[key], dtype=np.float64) for r in rows]
        g.create_dataset(key, data=column, dtype=floats)


def read_journal(path: Path) -> list[dict]:
    """The complete rows of a journal (a line cut short by a kill is not valid JSON and is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().split(b"\n"):
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows.append(row)
    return rows


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

    Create or reopen with :meth:`open`; :meth:`record` makes one finished item safe (a journal line),
    :meth:`commit` merges the journal into the file.  ``checkpoint`` (tests) is called with a stage
    name at each step where a kill must be survived.
    """

    path: Path
    checkpoint: Checkpoint = field(default=lambda stage: None, repr=False)
    committed: set[str] = field(default_factory=set)
    journaled: set[str] = field(default_factory=set)

    @property
    def journal(self) -> Path:
        return journal_path(self.path)

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
        except OSError as exc:
            raise InputError(f"run.output: cannot create the folder {str(path.parent)!r} ({exc.strerror})") from exc
        run = {"started": _now(), **{k: meta[k] for k in ("mpi_size", "mpi_group_size", "machine_hostname")
                                     if k in meta}}
        if exists:
            store._check_resumable(study)
            store.journaled = {row["id"] for row in read_journal(store.journal)}
            store.commit(run=run)
        else:
            with contextlib.suppress(FileNotFoundError):
                store.journal.unlink()  # a journal without its study file belongs to no study
            store._write(lambda f, old: _new_file(f, study, meta, items_total, run), stage=False)
        return store

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
            self.committed = {_text(x) for x in f["items/id"][()]} if "id" in f["items"] else set()
        diff = config_differences(stored, study)
        if diff:
            raise InputError(f"--resume: the configuration changed since {self.path} was started; these keys "
                             "differ:\n  " + "\n  ".join(diff) + "\nrestore them, or start a new study "
                             "(another run.output)")

    def record(self, result: Mapping) -> None:
        """Make one finished item safe: one line appended to the journal by a single ``write``."""
        row = encode(result)
        line = (json.dumps(row, separators=(",", ":")) + "\n").encode()
        try:
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _write_error(exc, f"the journal {self.journal}") from exc
        self.journaled.add(row["id"])
        self.checkpoint("item recorded")

    def commit(self, run: dict | None = None) -> int:
        """Merge the journal into the study file atomically; return the number of items merged."""
        pending = self.journaled - self.committed
        if not pending and run is None:
            self._empty_journal()
            return 0
        new = {row["id"]: row for row in read_journal(self.journal) if row["id"] in pending}

        def build(f: h5py.File, old: h5py.File) -> None:
            for key, value in old.attrs.items():
                f.attrs[key] = value
            if run is not None:
                f.attrs["runs"] = json.dumps([*json.loads(old.attrs["runs"]), run])
            rows = {row["id"]: row for row in _read_rows(old)}
            self.checkpoint("commit partly written")
            rows.update(new)
            _write_rows(f.create_group("items"), [rows[k] for k in sorted(rows)])

        self._write(build)
        self.committed |= set(new)
        self.checkpoint("commit replaced")
        self._empty_journal()
        return len(new)

    def _write(self, build: Callable, stage: bool = True) -> None:
        """Write a new study file with ``build(new, old)`` to a temporary file; rename it over the old one."""
        _remove_stale(self.path.parent, self.path.name)
        try:
            with _atomic(self.path) as tmp:
                with h5py.File(tmp, "w") as f:
                    if self.path.exists():
                        with h5py.File(self.path, "r") as old:
                            build(f, old)
                    else:
                        build(f, None)
                if stage:
                    self.checkpoint("commit written")
        except OSError as exc:
            raise _write_error(exc, str(self.path)) from exc

    def _empty_journal(self) -> None:
        """Empty the journal once every line in it is in the study file."""
        if self.journaled - self.committed:
            return
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.journal, 0)
        self.journaled = set()


def _new_file(f: h5py.File, study: Mapping, meta: Mapping, items_total: int, run: dict) -> None:
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
    _write_rows(f.create_group("items"), [])


def journal_path(path: Path) -> Path:
    """The journal of the study file ``path``: ``<path>.journal``, next to it."""
    path = Path(path)
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
        rows = {row["id"]: row for row in _read_rows(f)}
    for row in read_journal(journal_path(path)):
        rows.setdefault(row["id"], row)
    items = {k: decode(rows[k]) for k in sorted(rows)}
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

"""The ``glep`` command line.

``glep compare`` (no arguments) runs the embedded default: coupled oscillators
driven at the first oscillator with a target on the last, every estimator
against the discrete adjoint, a table on stdout, ``results.h5`` and a PNG of
error versus β in the output folder.

Options are read as strings by argparse and validated once, with the TOML
file's values, by :func:`glep.config.compare_config`.  Under MPI every phase
that can fail on one rank only (parsing, validation, the output folder,
building the problem) is agreed by :func:`glep.parallel.agree` before the next
collective call: an error anywhere stops every rank, printed once, exit 2.
Ctrl-C ends with ``glep: interrupted`` (exit 130), a closed stdout pipe
quietly (exit 141, as for SIGPIPE).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from glep.errors import GlepError, InputError

#: exit statuses: user error, Ctrl-C (128 + SIGINT), stdout closed (128 + SIGPIPE)
EXIT_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 2, 130, 141

#: a command-line token that is a negative number (argparse would take ``-1e-3`` for an option)
_NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


class UsageError(InputError):
    """argparse's complaint (unknown option, missing value), raised instead of exiting."""

    def __init__(self, message: str, usage: str):
        super().__init__(message)
        self.usage = usage


class _Exit(GlepError):
    """argparse finished the command itself (``--help``): exit with ``code``, nothing to report."""

    def __init__(self, code: int):
        super().__init__(f"exit {code}")
        self.code = code
        self.reported_elsewhere = True


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` (so that MPI ranks can agree on it)."""

    def error(self, message: str):
        raise UsageError(message, self.format_usage())


def _parser() -> argparse.ArgumentParser:
    from glep.config import DEFAULTS
    from glep.estimators.registry import ESTIMATORS, FIELD_ESTIMATORS, NUDGES
    from glep.field_families import FIELD_FAMILIES
    from glep.ivp.integrators import INTEGRATORS
    from glep.models import FAMILIES

    def choices(names) -> str:
        return "{" + ", ".join(names) + "}"

    p = _Parser(prog="glep", description="Gradient estimators for physical learning systems "
                "(GLEP, RHEL, HEB) compared against exact discrete adjoints.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="compare every estimator with the discrete adjoint",
                       description="Run the gradient estimators on one system and compare them with the "
                       "discrete adjoint of the same integrator. With no options: the embedded default "
                       "(4 coupled oscillators, input drive on oscillator 0, target on oscillator 3, T=10, "
                       "400 Störmer–Verlet steps). Writes results.h5 and error_vs_beta.png to --output. "
                       "Every option can also be set in a TOML file (see examples/compare.toml).")
    c.add_argument("--config", type=Path, help="TOML file with any of the options below, at top level or in "
                   "a [compare] table (command-line options override it)")
    c.add_argument("--system", metavar="NAME",
                   help=f"model family: {choices(sorted(FAMILIES))}, or a field system "
                   f"{choices(FIELD_FAMILIES)} (default {DEFAULTS['system']})")
    c.add_argument("--n", help="number of degrees of freedom, >= 2 (default 4; field systems: mesh cells, "
                   "kerr: lattice side, default the system's)")
    c.add_argument("--T", help="horizon T > 0, finite (default: the family's, 10 for oscillators)")
    c.add_argument("--steps", help="number of time steps N >= 1 (default 400; field systems: the system's)")
    c.add_argument("--batch", help="number of input sequences integrated at once, >= 1 (default none)")
    c.add_argument("--integrator", metavar="NAME",
                   help=f"variational integrator: {choices(sorted(INTEGRATORS))} "
                   "(default Störmer–Verlet if separable, else midpoint)")
    c.add_argument("--backend", metavar="NAME",
                   help="where the Störmer–Verlet loops run: {numpy, jax} (jax: jit-compiled, needs the "
                   "optional extra glep[jax]; default numpy)")
    c.add_argument("--gamma", help="magnetic strength of the 'gyroscopic' family, finite (default 0.1)")
    c.add_argument("--betas", nargs="+", metavar="BETA",
                   help="nudging strengths > 0 for the bias curves (default 1e-1 ... 1e-5)")
    c.add_argument("--nudges", nargs="+", metavar="NUDGE",
                   help=f"nudging schemes among {choices(NUDGES)} (default one-sided centred)")
    c.add_argument("--estimators", nargs="+", metavar="NAME",
                   help=f"estimators to run, among {choices(ESTIMATORS)}; field systems: "
                   f"{choices(FIELD_ESTIMATORS)} (default: every one of the system but periodic, run when named)")
    c.add_argument("--report-beta", help="β > 0 of the table's metrics (default 1e-4, centred)")
    c.add_argument("--output", help="output folder, created if needed (default ./glep-output)")
    c.add_argument("--seed", help="seed >= 0 of the model's random parameters (default 0)")
    c.add_argument("--quiet", action="store_true", help="no progress messages")
    c.epilog = ("PETSc options for the finite-element (CBVP) solves pass through with the glep_ prefix, "
                "e.g. -glep_snes_monitor or -glep_snes_rtol 1e-12.")
    s = sub.add_parser("sweep", help="run a declarative study (TOML) into one HDF5 file",
                       description="Run a study: systems (built-in families or package.module:function), "
                       "estimator rows, β grids, nudging schemes, seeds, batches and step counts, declared in a "
                       "TOML file (see examples/sweep.toml). Each finished work item is committed to the study "
                       "file so that a killed run loses none; --resume continues it. Under mpirun the items are "
                       "distributed over the ranks.")
    s.add_argument("config", type=Path, help="the study's TOML file")
    s.add_argument("--output", help="the study's HDF5 file (default: run.output of the TOML file)")
    s.add_argument("--group-size", help="MPI ranks per work item, dividing the number of ranks "
                   "(default: run.group_size of the TOML file, else 1)")
    s.add_argument("--resume", action="store_true", help="continue the study file, without redoing finished items")
    s.add_argument("--progress", action="store_true",
                   help="show the progress bar even when stdout is not a terminal")
    s.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    t = sub.add_parser("train", help="train a model on a built-in task with chosen estimators (TOML)",
                       description="Train a network on a built-in task (time-stepped oscillator chains, a "
                       "finite-element boundary-value task, a Kerr cavity array) with each chosen estimator and with "
                       "the discrete adjoint (the reference), from the same initialisation on the same minibatches "
                       "(see examples/train*.toml). Under mpirun each minibatch is split over the ranks and the "
                       "gradients are summed. Writes checkpoint.h5 every training.checkpoint_every updates, then "
                       "train.h5 and learning_curves.png; --resume continues from the checkpoint.")
    t.add_argument("config", type=Path, help="the training's TOML file")
    t.add_argument("--output", help="output folder (default: run.output of the TOML file)")
    t.add_argument("--resume", action="store_true", help="continue from the output folder's checkpoint.h5")
    t.add_argument("--quiet", action="store_true", help="no progress messages")
    r = sub.add_parser("report", help="print the table of a saved results.h5, study or train.h5 file (no re-run)")
    r.add_argument("path", type=Path)
    r.add_argument("--plot", type=Path, help="also redraw the error-versus-β PNG here (glep compare results)")
    r.add_argument("--csv", type=Path, help="also write the table as CSV here (study and training files)")
    r.add_argument("--plots", type=Path,
                   help="also draw the study's or the training's plots into this folder (study and training files)")
    return p


def _config(args) -> dict:
    """The validated options (defaults < TOML file < command line) as a plain dict."""
    from glep.config import KEYS, compare_config

    cli = {key: getattr(args, key, None) for key in KEYS}
    return compare_config(cli, args.config).model_dump()


def _build_problem(cfg: dict):
    """The problem of an ODE family; ``backend`` chooses where the (Störmer–Verlet) loops run."""
    import dataclasses

    from glep.config import ode_model
    from glep.estimators.problem import Problem
    from glep.ivp.integrators import INTEGRATORS

    integrator = cfg["integrator"]
    if cfg["backend"] != "numpy":
        integrator = dataclasses.replace(INTEGRATORS[integrator or "stormer-verlet"](), backend=cfg["backend"])
    return Problem.from_model(ode_model(cfg), steps=cfg["steps"], integrator=integrator)


def _same_on_every_rank(options: dict, what: str = "options") -> None:
    """Collective: raise (agreed) if ranks were given different ``options`` (e.g. MPMD with other values)."""
    from mpi4py import MPI

    from glep.parallel import agree

    comm = MPI.COMM_WORLD
    if comm.size == 1:
        return
    every = comm.allgather(options)

    def check():
        first = every[0]
        for rank, theirs in enumerate(every):
            differ = {k: (first.get(k), theirs.get(k)) for k in first | theirs if first.get(k) != theirs.get(k)}
            if differ and comm.rank == 0:
                shown = ", ".join(f"{k}: {a!r} on rank 0, {b!r} on rank {rank}" for k, (a, b) in differ.items())
                raise InputError(f"ranks were given different {what} ({shown}); every rank must run the same job")

    agree(check)


def run_compare(args, petsc: list[str] = ()) -> int:
    """``glep compare`` in phases, each agreed across MPI ranks before the next collective call:
    options (validated), output folder (rank 0 creates and test-writes it), problem, computation, output."""
    from glep.config import check_output_folder
    from glep.parallel import agree, is_root

    cfg = agree(lambda: _config(args), what="reading the options")
    _same_on_every_rank(cfg | {"PETSc options": list(petsc)})
    out = Path(cfg["output"])
    root = is_root()
    quiet = args.quiet or not root
    say = (lambda m: None) if quiet else (lambda m: print(f"[glep] {m}", file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    agree(lambda: check_output_folder(out) if root else None, what="checking the output folder")
    previous = None
    if petsc:  # e.g. -glep_snes_monitor, -glep_ksp_type preonly: handed to every finite-element solve
        from glep.bvp.solvers import set_default_petsc_options

        previous = set_default_petsc_options(command_line_petsc_options(petsc))
    try:
        return _compare(cfg, out, root, say, t0)
    finally:
        if previous is not None:
            from glep.bvp.solvers import set_default_petsc_options

            set_default_petsc_options(previous)


def _compare(cfg: dict, out: Path, root: bool, say, t0: float) -> int:
    """The computation and output phases of :func:`run_compare`."""
    from glep.estimators.compare import compare_estimators, failure_summary, format_table
    from glep.estimators.output import versions, write_results
    from glep.field_families import FIELD_FAMILIES
    from glep.parallel import agree

    if cfg["system"] in FIELD_FAMILIES:
        return _compare_field(cfg, out, root, say, t0)
    problem = agree(lambda: _build_problem(cfg), what="building the problem")
    say(f"{problem.system.name}: P = {problem.parameter_count} parameters, N = {problem.grid.N} steps, "
        f"T = {problem.grid.T:g}, integrator {problem.integrator.name} ({problem.integrator.backend})")
    report = compare_estimators(problem, estimators=cfg["estimators"], betas=cfg["betas"], nudges=cfg["nudges"],
                                report_beta=float(cfg["report_beta"]), progress=say)
    library_versions = versions()  # imports PETSc (collective): on every rank
    summary = failure_summary(report)  # every rank computed the same report: the same exit status
    if root:  # rank 0 prints and writes it
        print(format_table(report), flush=True)
        h5, png = write_results(out, report, cfg, {"free": problem.free_trajectory()}, library_versions)
        say(f"wrote {h5} and {png} ({time.perf_counter() - t0:.1f} s)")
        if summary:  # also with --quiet: only progress is silenced
            print(f"glep: {summary}", file=sys.stderr, flush=True)
    return 1 if summary else 0


def _compare_field(cfg: dict, out: Path, root: bool, say, t0: float) -> int:
    """``glep compare --system NAME`` for a field system: its estimators against its discrete adjoint."""
    from glep.estimators.compare import failure_summary, format_table
    from glep.estimators.field_objects import compare_field_estimators
    from glep.estimators.heb import ModeProblem
    from glep.estimators.output import versions, write_results
    from glep.estimators.registry import FIELD_ESTIMATORS
    from glep.field_families import build_field_problem
    from glep.parallel import agree

    problem = agree(lambda: build_field_problem(cfg["system"], cfg["n"], cfg["T"], cfg["steps"], cfg["seed"]),
                    what="building the problem")
    if isinstance(problem, ModeProblem):
        from glep.estimators.field_objects import KerrHEB

        estimators = [KerrHEB()]
        name = f"{problem.system.name} (N = {problem.steps}, T = {problem.T:g})"
    else:
        estimators = [FIELD_ESTIMATORS[e] for e in cfg["estimators"]]
        name = problem.name
    say(f"{name}: {', '.join(e.label for e in estimators)}")
    report = compare_field_estimators(problem, estimators, betas=cfg["betas"], nudges=cfg["nudges"],
                                      report_beta=float(cfg["report_beta"]), progress=say, name=name)
    library_versions = versions()
    summary = failure_summary(report)
    if root:
        print(format_table(report), flush=True)
        h5, png = write_results(out, report, cfg, None, library_versions)
        say(f"wrote {h5} and {png} ({time.perf_counter() - t0:.1f} s)")
        if summary:
            print(f"glep: {summary}", file=sys.stderr, flush=True)
    return 1 if summary else 0


def run_sweep(args, petsc: list[str] = ()) -> int:
    """``glep sweep``: the study validated (every rank agreeing), then run; exit 1 if an item failed.

    ``-glep_*`` PETSc options reach every finite-element solve, as for ``glep compare``.
    """
    previous = None
    if petsc:
        from glep.bvp.solvers import set_default_petsc_options

        previous = set_default_petsc_options(command_line_petsc_options(petsc))
    try:
        return _sweep(args)
    finally:
        if previous is not None:
            from glep.bvp.solvers import set_default_petsc_options

            set_default_petsc_options(previous)


def _sweep(args) -> int:
    from glep.estimators.sweep import run_sweep as sweep
    from glep.parallel import agree, is_root
    from glep.sweep_config import sweep_config

    cfg = agree(lambda: sweep_config(args.config, {"output": args.output, "group_size": args.group_size}),
                what="reading the study")
    _same_on_every_rank(cfg.model_dump(), "studies")
    root = is_root()
    quiet = args.quiet or not root
    say = (lambda m: None) if quiet else (lambda m: print(f"[glep] {m}", file=sys.stderr, flush=True))
    show = not quiet and (args.progress or sys.stdout.isatty())
    outcome = sweep(cfg, resume=args.resume, progress=show, say=say)
    summary = outcome.summary()
    if root:
        print(f"{cfg.name}: {outcome.now} items run, {outcome.before} finished before, {outcome.total} in the "
              f"study ({outcome.wall_time:.1f} s): {outcome.path}", flush=True)
        if summary:
            print(f"glep: {summary}", file=sys.stderr, flush=True)
    return 1 if summary else 0


def run_train(args) -> int:
    """``glep train``: the configuration validated and checked (every rank agreeing), then the training."""
    from glep.estimators.train import format_table, run_training
    from glep.parallel import agree, is_root
    from glep.train_config import train_config

    cfg = agree(lambda: train_config(args.config, {"output": args.output}), what="reading the configuration")
    _same_on_every_rank(cfg.model_dump(), "training configurations")
    root = is_root()
    quiet = args.quiet or not root
    say = (lambda m: None) if quiet else (lambda m: print(f"[glep] {m}", file=sys.stderr, flush=True))
    outcome = run_training(cfg, resume=args.resume, say=say)
    if root:
        print(format_table(outcome), flush=True)
        say(f"wrote {outcome.results} and {outcome.plot} ({outcome.wall_time:.1f} s)")
    return 0


def _write_tables(args, data, markdown, to_csv, plot) -> int:
    """Print ``markdown(data)``; write ``to_csv(data)`` to ``--csv`` and ``plot(data, folder)`` into ``--plots``."""
    print(markdown(data), flush=True)
    if args.csv:
        try:
            args.csv.write_text(to_csv(data))
        except OSError as exc:
            raise InputError(f"--csv: cannot write {str(args.csv)!r} ({exc.strerror})") from exc
    if args.plots:
        try:
            plot(data, args.plots)
        except OSError as exc:
            raise InputError(f"--plots: cannot write into {str(args.plots)!r} ({exc.strerror})") from exc
    return 0


def _report_study(args) -> int:
    from glep.estimators.study import load_study
    from glep.estimators.sweep_report import markdown, plot_study, to_csv

    return _write_tables(args, load_study(args.path), markdown, to_csv, plot_study)


def _report_train(args) -> int:
    from glep.estimators.train_report import load_train_file, markdown, plot_training, to_csv

    if args.plot:
        raise InputError(f"--plot applies to glep compare results; {args.path} is a training file "
                         "(use --plots FOLDER)")
    return _write_tables(args, load_train_file(args.path), markdown, to_csv, plot_training)


def run_report(args) -> int:
    """Print the table of a results or study file (and its failures on stderr); exit 0 once it is read."""
    from glep.estimators.compare import failure_summary, format_table
    from glep.estimators.output import load_report, plot_mismatch, plot_report
    from glep.estimators.study import is_study_file
    from glep.estimators.train_report import is_train_file
    from glep.parallel import is_root

    if not is_root():  # rank 0 reads and prints; its errors reach every rank through the agreed block of _run
        return 0
    if args.path.is_file() and is_train_file(args.path):
        return _report_train(args)
    if args.path.is_file() and is_study_file(args.path):
        if args.plot:
            raise InputError(f"--plot applies to glep compare results; {args.path} is a study (use --plots FOLDER)")
        return _report_study(args)
    if args.csv or args.plots:
        raise InputError(f"--csv and --plots apply to study files (glep sweep) and training files (glep train); "
                         f"{args.path} is neither")
    report = load_report(args.path)  # InputError for a missing, damaged or foreign file
    print(format_table(report), flush=True)
    summary = failure_summary(report)
    if summary:
        print(f"glep: {summary}", file=sys.stderr, flush=True)
    if args.plot:
        plot_report(report, args.plot)
    else:
        warning = plot_mismatch(args.path, report)
        if warning:
            print(f"glep: warning: {warning}", file=sys.stderr, flush=True)
    return 0


def _petsc_options(extra: list[str]) -> list[str]:
    """The ``-glep_*`` PETSc options (and their values) among unparsed arguments.

    A value is the token after an option unless it is itself an option; a negative number is a value
    (``_parse`` marks it with a leading space, :func:`command_line_petsc_options` recognises it).
    """
    out, take_value = [], False
    for tok in extra:
        if tok.startswith("-glep_"):
            out.append(tok)
            take_value = True
        elif take_value and (not tok.startswith("-") or _NEGATIVE_NUMBER.match(tok)):
            out.append(tok)
            take_value = False
        else:
            take_value = False
    return out


def command_line_petsc_options(argv: list[str]) -> dict[str, str | None]:
    """The ``-glep_*`` options of a command line as a dict for the solvers (glep's only such parser).

    ``["-v", "-glep_snes_rtol", "-3", "-glep_snes_monitor"]`` gives ``{"snes_rtol": "-3",
    "snes_monitor": None}``: the ``glep_`` prefix is removed (each solve sets the options under its own
    problem prefix, see :mod:`glep.bvp.solvers`), ``None`` marks a flag; other arguments are ignored.
    """
    options: dict[str, str | None] = {}
    name = None
    for tok in _petsc_options([a.strip() for a in argv]):
        if tok.startswith("-glep_"):
            name = tok[len("-glep_"):]
            options[name] = None
        elif name is not None:
            options[name] = tok
            name = None
    return options


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Parse the command line; ``-glep_*`` PETSc options are set aside.  Raises instead of exiting."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # a leading space keeps argparse from reading -1e-3 as an option; the validation strips it
    argv = [" " + a if _NEGATIVE_NUMBER.match(a) else a for a in argv]
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # --help printed
        raise _Exit(exc.code or 0) from None
    petsc = _petsc_options(extra)
    if len(petsc) != len(extra):
        parser.error(f"unrecognized arguments: {' '.join(a.strip() for a in extra if a not in petsc)}")
    return args, [a.strip() for a in petsc]


def _rank() -> tuple[int, int]:
    """(rank, size) of MPI.COMM_WORLD, or (0, 1) when MPI was never loaded."""
    mpi = sys.modules.get("mpi4py.MPI")
    return (mpi.COMM_WORLD.rank, mpi.COMM_WORLD.size) if mpi is not None else (0, 1)


def _report_error(exc: GlepError) -> int:
    """Print a glep error once (the failing rank prints, the others stay silent); return the exit status."""
    if isinstance(exc, _Exit):
        return exc.code
    from glep.parallel import RankError

    cause = exc.__cause__
    bug = cause if isinstance(exc, RankError) and isinstance(cause, Exception) and not isinstance(
        cause, GlepError) else None
    if bug is not None:  # a defect on this rank, agreed into a RankError under MPI: keep its traceback
        if not getattr(exc, "reported_elsewhere", False):
            import traceback

            traceback.print_exception(bug, file=sys.stderr)
            print(f"glep: internal error: {exc}", file=sys.stderr, flush=True)
        return 1
    if not getattr(exc, "reported_elsewhere", False):
        rank, size = _rank()
        where = f" on rank {rank} of {size}" if size > 1 else ""
        if isinstance(exc, UsageError):
            print(exc.usage, end="", file=sys.stderr)
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"glep: error{where}: {line}", file=sys.stderr, flush=True)
    return EXIT_INPUT


def _run(argv: list[str] | None) -> int:
    from glep.parallel import agree, collective

    try:
        with collective(what="glep"):
            args, petsc = agree(lambda: _parse(argv), what="parsing the command line")
            if args.command == "compare":
                rc = run_compare(args, petsc)
            elif args.command == "train":
                rc = run_train(args)
            else:
                rc = run_sweep(args, petsc) if args.command == "sweep" else run_report(args)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return rc
    except GlepError as exc:
        return _report_error(exc)


class _PipeGuard:
    """A stand-in for ``sys.stdout`` that survives its reader going away (``glep compare | head -1``).

    On the first ``BrokenPipeError`` stdout is pointed at ``os.devnull`` (as the Python docs
    recommend) and further output is dropped, so that the run still writes its results; ``broken``
    tells :func:`main` to exit with 141 (128 + SIGPIPE) at the end.
    """

    def __init__(self, stream):
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        self.broken = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _python_handles_signals() -> None:
    """Keep PETSc from installing its signal handlers (read by PetscInitialize from ``PETSC_OPTIONS``).

    PETSc's handlers turn SIGPIPE (a closed stdout) and SIGTERM into "PETSC ERROR: Caught signal"
    and an ``MPI_Abort``; the command line wants Python's behaviour (BrokenPipeError, the default
    SIGTERM, its own handlers).  Without effect once PETSc is initialised.  Only for the ``glep``
    command itself (``main()`` without arguments): a program calling ``main(argv)`` keeps its environment.
    """
    if "petsc4py.PETSc" in sys.modules:
        return
    options = os.environ.get("PETSC_OPTIONS", "")
    if "-no_signal_handler" not in options.split():
        os.environ["PETSC_OPTIONS"] = f"{options} -no_signal_handler".strip()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``glep``; returns the exit status (0, 2 for a user error, 130 Ctrl-C, 141 closed pipe)."""
    if argv is None:
        _python_handles_signals()
    stdout = sys.stdout
    guard = sys.stdout = _PipeGuard(stdout)
    try:
        rc = _run(argv)
        return EXIT_BROKEN_PIPE if guard.broken else rc
    except KeyboardInterrupt:
        if _rank()[0] == 0:
            print("glep: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # written past the guard (to sys.__stdout__ or the file descriptor)
        guard._silence()
        return EXIT_BROKEN_PIPE
    finally:
        sys.stdout = stdout


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``glep`` command line.

``glep compare`` (no arguments) runs the embedded default: coupled oscillators
driven at the first oscillator with a target on the last, every estimator
against the discrete adjoint, a table on stdout, ``results.h5`` and a PNG of
error versus β in the output folder.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

from glep.errors import GlepError, InputError

DEFAULTS = {
    "system": "coupled_oscillators",
    "n": 4,
    "T": None,
    "steps": 400,
    "batch": None,
    "integrator": None,
    "gamma": 0.1,
    "betas": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
    "nudges": ["one-sided", "centred"],
    "estimators": ["civp-contrast", "civp-residual", "pfvp", "echo", "rhel", "cbvp"],
    "report_beta": 1e-4,
    "output": "glep-output",
    "seed": 0,
}


def _parser() -> argparse.ArgumentParser:
    from glep.estimators.compare import ESTIMATORS
    from glep.models import FAMILIES

    p = argparse.ArgumentParser(prog="glep", description="Gradient estimators for physical learning systems "
                                "(GLEP, RHEL, HEB) compared against exact discrete adjoints.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="compare every estimator with the discrete adjoint",
                       description="Run the gradient estimators on one system and compare them with the "
                       "discrete adjoint of the same integrator. With no options: the embedded default "
                       "(4 coupled oscillators, input drive on oscillator 0, target on oscillator 3, T=10, "
                       "400 Störmer–Verlet steps). Writes results.h5 and error_vs_beta.png to --output.")
    c.add_argument("--config", type=Path, help="TOML file with any of the options below (command-line "
                   "options override it)")
    c.add_argument("--system", choices=sorted(FAMILIES), help=f"model family (default {DEFAULTS['system']})")
    c.add_argument("--n", type=int, help="number of degrees of freedom (default 4)")
    c.add_argument("--T", type=float, help="horizon T > 0 (default: the family's, 10 for oscillators)")
    c.add_argument("--steps", type=int, help="number of time steps N (default 400)")
    c.add_argument("--batch", type=int, help="number of input sequences integrated at once (default none)")
    c.add_argument("--integrator", choices=["stormer-verlet", "midpoint", "trapezoid", "gauss2"],
                   help="variational integrator (default Störmer–Verlet if separable, else midpoint)")
    c.add_argument("--gamma", type=float, help="magnetic strength of the 'gyroscopic' family (default 0.1)")
    c.add_argument("--betas", type=float, nargs="+", help="nudging strengths for the bias curves")
    c.add_argument("--nudges", nargs="+", choices=["one-sided", "centred", "complex"],
                   help="nudging schemes (default one-sided centred)")
    c.add_argument("--estimators", nargs="+", choices=sorted(ESTIMATORS), help="estimators to run")
    c.add_argument("--report-beta", type=float, help="β of the table's metrics (default 1e-4, centred)")
    c.add_argument("--output", type=Path, help="output folder (default ./glep-output)")
    c.add_argument("--seed", type=int, help="seed of the model's random parameters")
    c.add_argument("--quiet", action="store_true", help="no progress messages")
    c.epilog = ("PETSc options for the finite-element (CBVP) solves pass through with the glep_ prefix, "
                "e.g. -glep_snes_monitor or -glep_snes_rtol 1e-12.")
    r = sub.add_parser("report", help="print the table of a saved results.h5 (no re-run)")
    r.add_argument("path", type=Path)
    r.add_argument("--plot", type=Path, help="also redraw the error-versus-β PNG here")
    return p


def _config(args) -> dict:
    cfg = dict(DEFAULTS)
    if args.config is not None:
        if not args.config.exists():
            raise InputError(f"--config: file {str(args.config)!r} does not exist")
        with open(args.config, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise InputError(f"--config: {args.config} is not valid TOML: {exc}") from exc
        data = data.get("compare", data)
        unknown = sorted(set(data) - set(DEFAULTS))
        if unknown:
            raise InputError(f"--config: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
        cfg.update(data)
    for key in DEFAULTS:
        val = getattr(args, key, None)
        if val is not None:
            cfg[key] = val
    cfg["output"] = str(cfg["output"])
    return cfg


def _build_problem(cfg: dict):
    from glep.estimators.problem import Problem
    from glep.models import FAMILIES

    family = FAMILIES[cfg["system"]]
    kw = {"n": int(cfg["n"]), "batch": cfg["batch"], "seed": int(cfg["seed"])}
    if cfg["system"] == "gyroscopic":
        kw["gamma"] = float(cfg["gamma"])
    if cfg["T"] is not None:
        kw["T"] = float(cfg["T"])
    model = family(**kw)
    return Problem.from_model(model, steps=int(cfg["steps"]), integrator=cfg["integrator"])


def run_compare(args) -> int:
    from glep.estimators.compare import compare_estimators, failure_summary, format_table
    from glep.estimators.output import versions, write_results
    from glep.parallel import is_root

    cfg = _config(args)
    out = Path(cfg["output"])
    root = is_root()
    quiet = args.quiet or not root
    say = (lambda m: None) if quiet else (lambda m: print(f"[glep] {m}", file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    problem = _build_problem(cfg)
    say(f"{problem.system.name}: P = {problem.parameter_count} parameters, N = {problem.grid.N} steps, "
        f"T = {problem.grid.T:g}, integrator {problem.integrator.name}")
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


def run_report(args) -> int:
    """Print the table of a results file (and its failures on stderr); exit 0 once it is read."""
    from glep.estimators.compare import failure_summary, format_table
    from glep.estimators.output import load_report, plot_mismatch, plot_report

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
    """The ``-glep_*`` PETSc options (and their values) among unparsed arguments."""
    out, take_value = [], False
    for tok in extra:
        if tok.startswith("-glep_"):
            out.append(tok)
            take_value = True
        elif take_value and not tok.startswith("-"):
            out.append(tok)
            take_value = False
        else:
            take_value = False
    return out


def main(argv: list[str] | None = None) -> int:
    from glep.parallel import collective

    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    petsc = _petsc_options(extra)
    if len(petsc) != len(extra):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a not in petsc)}")
    if petsc:  # e.g. -glep_snes_monitor, -glep_ksp_type preonly: the bvp solvers read the glep_ prefix
        from glep.bvp.solvers import insert_command_line_options

        insert_command_line_options(petsc)
    try:
        with collective(what=f"glep {args.command}"):
            rc = run_compare(args) if args.command == "compare" else run_report(args)
        return rc
    except GlepError as exc:
        print(f"glep: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

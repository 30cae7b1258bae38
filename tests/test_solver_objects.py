"""Solvers as objects, their frozen results, and PETSc options given per solve under a per-problem prefix."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from petsc4py import PETSc

import glep
from glep import CBVP
from glep.bvp import Continuation, make_discretisation, natural_continuation, solve_bvp, solve_problem
from glep.bvp.reduced import ReducedProblem
from glep.bvp.solvers import (
    Deflation,
    GradientFlow,
    Newton,
    ResidualDescent,
    TrustRegion,
    petsc_options,
    set_default_petsc_options,
    solver_from_keywords,
    use_command_line_options,
)
from glep.models import coupled_oscillators
from glep.reference import bratu_exact, bratu_system

MESH = (1.0, 16)


@pytest.fixture(scope="module")
def oscillators():
    m = coupled_oscillators(2)
    return m.system, m.params, CBVP([0.2, -0.1], [0.1, 0.3])


def test_command_line_options_reach_the_glep_prefix():
    """Moved from test_bvp_core: ``-glep_*`` options of a command line reach every solve's own prefix."""
    previous = set_default_petsc_options(None)
    db = PETSc.Options()
    try:
        added = use_command_line_options(["-v", "-glep_testopt_a", "-3", "-glep_testopt_flag", "-glep_testopt_b",
                                          "x"])
        assert added == {"testopt_a": "-3", "testopt_flag": None, "testopt_b": "x"}
        with petsc_options("glep_test_", {"testopt_b": "y"}):  # the solve's own options win
            assert db.getString("glep_test_testopt_a") == "-3"
            assert db.getString("glep_test_testopt_b") == "y"
            assert db.hasName("glep_test_testopt_flag")
        assert not any(db.hasName(f"glep_test_testopt_{k}") for k in ("a", "b", "flag"))
    finally:
        set_default_petsc_options(previous)


def test_petsc_options_environment_variable_reaches_every_solve(monkeypatch):
    """``PETSC_OPTIONS="-glep_…"`` (the cluster way) reaches the per-problem prefix, below the solve's options."""
    previous = set_default_petsc_options({"testenv_b": "cli"})
    monkeypatch.setenv("PETSC_OPTIONS", "-log_view_memory -glep_testenv_a 7 -glep_testenv_b env -glep_testenv_flag")
    db = PETSc.Options()
    try:
        with petsc_options("glep_test_", {"testenv_c": "solve"}):
            assert db.getString("glep_test_testenv_a") == "7"
            assert db.getString("glep_test_testenv_b") == "cli"  # the process defaults (CLI) win over the variable
            assert db.getString("glep_test_testenv_c") == "solve"
            assert db.hasName("glep_test_testenv_flag") and not db.hasName("glep_test_log_view_memory")
        assert not db.hasName("glep_test_testenv_a")
    finally:
        set_default_petsc_options(previous)


def test_importing_glep_bvp_reads_no_command_line_option():
    code = ("import glep.bvp; from petsc4py import PETSc; "
            "assert not any(k.startswith('glep') for k in PETSc.Options().getAll()), PETSc.Options().getAll()")
    run = subprocess.run([sys.executable, "-c", code, "-glep_snes_monitor"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_options_are_set_under_the_problem_prefix_during_the_solve_only(oscillators):
    system, params, bc = oscillators
    problem = ReducedProblem(make_discretisation(system, params, MESH), bc)
    other = ReducedProblem(make_discretisation(system, params, MESH), bc)
    assert problem.options_prefix.startswith("glep_") and problem.options_prefix != other.options_prefix
    seen = []

    def monitor(snes, its, fnorm):
        seen.append((snes.getOptionsPrefix(), PETSc.Options().getString(problem.options_prefix + "ksp_type")))

    sol = solve_problem(problem, solver=Newton(options={"ksp_type": "preonly"}, monitor=monitor))
    assert sol.report.reason.startswith("CONVERGED") and seen
    assert all(s == (problem.options_prefix, "preonly") for s in seen)
    assert not PETSc.Options().hasName(problem.options_prefix + "ksp_type")


@pytest.mark.parametrize("method, solver", [("newton", Newton(rtol=1e-11)), ("trust-region", TrustRegion(rtol=1e-11)),
                                            ("residual-descent", ResidualDescent(rtol=1e-11))])
def test_keyword_and_object_spellings_solve_alike(oscillators, method, solver):
    system, params, bc = oscillators
    by_keyword = solve_bvp(system, params, MESH, bc, method=method, rtol=1e-11)
    by_object = solve_bvp(system, params, MESH, bc, solver=solver)
    assert solver_from_keywords(method, rtol=1e-11) == solver
    assert by_keyword.report.iterations == by_object.report.iterations
    scale = np.max(np.abs(by_object.q))
    assert np.max(np.abs(by_keyword.q - by_object.q)) <= 1e3 * np.finfo(float).eps * scale


def test_results_are_frozen_and_complete(oscillators):
    system, params, bc = oscillators
    sol = solve_bvp(system, params, MESH, bc, solver=Newton(), morse=True)
    assert sol.morse_index == 0 and sol.fe.hessian.tolerance is not None and "continuation_value" not in sol.meta
    assert sol.report.reason.startswith("CONVERGED") and len(sol.report.history) == sol.report.iterations + 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        sol.report.reason = "changed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        sol.action = 0.0


def test_bad_solver_arguments_are_input_errors(oscillators):
    system, params, bc = oscillators
    with pytest.raises(glep.InputError, match=r"either solver=.* or the keywords"):
        solve_bvp(system, params, MESH, bc, solver=Newton(), rtol=1e-8)
    with pytest.raises(glep.InputError, match=r"unknown option\(s\) \['dt'\] for method='newton'"):
        solve_bvp(system, params, MESH, bc, dt=0.1)
    with pytest.raises(glep.InputError, match="method must be one of"):
        solver_from_keywords("bisection")
    with pytest.raises(glep.InputError, match="solver must be Newton"):
        solve_bvp(system, params, MESH, bc, solver="newton")
    with pytest.raises(glep.InputError, match="linesearch must be 'bt' or 'basic'"):
        Newton(linesearch="cp")
    with pytest.raises(glep.InputError, match="metric must be 'L2' or 'H1'"):
        GradientFlow(metric="H2")
    with pytest.raises(glep.InputError, match=r"unknown deflation option\(s\) \['linesearch'\]"):
        Deflation(search={"linesearch": "bt"})


def test_gradient_flow_deflation_and_continuation_objects():
    """The Bratu branches (λ = 2) by the object spelling: the flow finds the minimum, deflation the saddle,
    continuation the lower branch, each as the keyword spelling does."""
    sys_, par = bratu_system(2.0)
    zero = CBVP([0.0], [0.0])
    h2 = (1.0 / 32) ** 2
    low = solve_bvp(sys_, par, (1.0, 32), zero, solver=GradientFlow(metric="L2"))
    assert low.morse_index == 0 and low.p0[0, 0] == pytest.approx(bratu_exact(2.0, "lower")[1], rel=h2)
    up = solve_bvp(sys_, par, (1.0, 32), zero, solver=Deflation(known=(low,)), morse=True)
    assert up.morse_index == 1 and up.p0[0, 0] == pytest.approx(bratu_exact(2.0, "upper")[1], rel=2 * h2)
    problem = ReducedProblem(make_discretisation(sys_, par, (1.0, 32)), zero)
    branch = Continuation("lam", (1.0, 2.0, 3.0), solver=Newton(rtol=1e-11)).run(problem)
    keyword = natural_continuation(ReducedProblem(make_discretisation(sys_, par, (1.0, 32)), zero), "lam",
                                   (1.0, 2.0, 3.0), rtol=1e-11)
    assert [s.meta["continuation_value"] for s in branch] == [1.0, 2.0, 3.0]
    assert [s.p0[0, 0] for s in branch] == pytest.approx([s.p0[0, 0] for s in keyword], rel=1e-12)  # same path
    # two converged solves of one discrete problem (residuals ≤ 10⁻¹⁰ relative, well-conditioned minimum)
    assert branch[1].p0[0, 0] == pytest.approx(low.p0[0, 0], rel=1e-8)


@pytest.mark.parametrize("spelling", ["solve", "default"])
def test_gradient_flow_options_reach_its_ts(oscillators, spelling):
    """``GradientFlow(options=...)`` sets the TS's options; a default ``flow_…`` (``-glep_flow_ts_type`` on the
    command line) reaches the same TS.  An unknown TS type proves that the option was read."""
    system, params, bc = oscillators
    problem = ReducedProblem(make_discretisation(system, params, MESH), bc)
    flow = GradientFlow(options={"ts_type": "no_such_type"}) if spelling == "solve" else GradientFlow()
    previous = set_default_petsc_options({"flow_ts_type": "no_such_type"} if spelling == "default" else None)
    try:
        with pytest.raises(PETSc.Error, match="error code 86"):
            solve_problem(problem, solver=flow)
    finally:
        set_default_petsc_options(previous)
    assert not [k for k in PETSc.Options().getAll() if k.startswith(problem.options_prefix)]

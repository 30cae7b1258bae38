"""The curated top-level API: every public name resolves and is documented; ``import glep`` stays light."""

import subprocess
import sys

import pytest

import glep

PUBLIC = sorted(glep.__all__)


def test_public_names_are_unique():
    assert len(PUBLIC) == len(set(PUBLIC))


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_resolves_and_has_a_docstring(name):
    obj = getattr(glep, name)
    assert (obj.__doc__ or "").strip(), f"glep.{name} has no docstring"
    assert name in dir(glep)


def test_the_aliases_are_the_objects_where_they_live():
    from glep.estimators.compare import compare_estimators
    from glep.estimators.contrast import civp_contrast
    from glep.estimators.metrics import compare
    from glep.ivp.shooting import shoot_cbvp

    assert glep.civp is civp_contrast
    assert glep.compare is compare_estimators
    assert glep.agreement is compare
    assert glep.shoot is shoot_cbvp
    assert glep.models.coupled_oscillators.__module__ == "glep.models"


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="module 'glep' has no attribute 'no_such_name'"):
        glep.no_such_name  # noqa: B018


def _fresh(code: str) -> str:
    """What ``code`` prints in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_glep_loads_no_petsc_dolfinx_or_ufl():
    """Time-stepping users never pay for the finite-element stack (checked in a fresh interpreter)."""
    code = ("import sys, glep\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('petsc4py', 'dolfinx', 'ufl', 'basix', 'ffcx', 'slepc4py', 'mpi4py', 'scipy'))\n"
            "print(heavy)\n")
    out = _fresh(code)
    assert out == "[]", out


@pytest.mark.parametrize("module", ["dolfinx", "petsc4py.PETSc", "slepc4py.SLEPc"])
def test_after_import_glep_a_user_may_import_the_fe_stack_directly(module):
    """``import glep; import dolfinx`` works: glep's import hook loads dolfinx_solver (MPI) first."""
    code = (f"import sys, glep, {module}\n"
            "names = list(sys.modules)\n"
            f"print(names.index('dolfinx_solver') < names.index('{module.split('.')[0]}'))\n")
    out = _fresh(code)
    assert out == "True", out


def test_dolfinx_solver_precedes_petsc_when_the_fe_backend_is_used():
    """Asking for a finite-element name loads PETSc, with dolfinx_solver imported before it."""
    code = ("import sys, glep\n"
            "glep.solve_bvp\n"
            "names = list(sys.modules)\n"
            "print(names.index('dolfinx_solver') < names.index('petsc4py') < names.index('dolfinx'))\n")
    out = _fresh(code)
    assert out == "True", out


# # When the echo stops being exact: breaking time reversal
#
# The Hamiltonian echo computes the PFVP trajectory by running the *same*
# system forward from the momentum-flipped final state.  That is exact only
# when the Lagrangian is time-reversible, ``L(q, −v) = L(q, v)``.  A magnetic
# (gyroscopic) term ``γ vᵀ G q`` breaks that symmetry.  PFVP by backward
# integration does not need it and stays exact.
#
# This example measures, for growing ``γ``:
#
# * the reversibility defect of the Lagrangian (checked, not assumed),
# * the echo retrace error (forward ``N`` steps, flip, ``N`` echo steps),
# * the gradient error of the echo and of PFVP against the discrete adjoint.

import warnings

from glep.errors import NotReversibleError
from glep.estimators import Centred, Problem, adjoint, compare, echo, pfvp, retrace_error
from glep.models import gyroscopic_oscillators

print(f"{'gamma':>8}{'defect':>12}{'retrace':>12}{'echo error':>13}{'PFVP error':>13}")
echo_errors = []
for gamma in (0.0, 0.01, 0.03, 0.1, 0.3):
    # For γ > 0 the Lagrangian is not separable: the implicit midpoint integrator is used.
    problem = Problem.from_model(gyroscopic_oscillators(n=4, gamma=gamma), steps=300)
    truth = adjoint(problem)
    exact = compare(pfvp(problem, Centred(1e-4)).theta, truth.theta)["relative_error"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning carries the same numbers as this table
        biased = compare(echo(problem, Centred(1e-4), allow_irreversible=True).theta,
                         truth.theta)["relative_error"]
    echo_errors.append(biased)
    print(f"{gamma:>8g}{problem.reversibility_defect:>12.2e}{retrace_error(problem):>12.2e}"
          f"{biased:>13.2e}{exact:>13.2e}")
    assert exact < 1e-6

# The echo's error grows with the strength of the symmetry breaking ...
assert all(a < b for a, b in zip(echo_errors, echo_errors[1:]))

# ... and by default the echo refuses a non-reversible system, pointing to PFVP.
try:
    echo(Problem.from_model(gyroscopic_oscillators(n=4, gamma=0.1), steps=50))
except NotReversibleError as exc:
    print("\necho refused:", str(exc)[:160], "...")

# # Quickstart: GLEP estimators on coupled oscillators
#
# A chain of coupled oscillators is driven at its first oscillator by an
# input ``u(t)`` and must make its last oscillator follow a target ``y(t)``.
# The loss is ``C = ∫ ½ (q_last − y)² dt`` along the free trajectory (a CIVP).
# We compute its gradient with respect to the masses, springs, couplings and
# input weights in several ways and check that the exact ones agree with the
# discrete adjoint of the same Störmer–Verlet integrator.

import numpy as np

from glep.estimators.contrast import civp_contrast, echo, pfvp
from glep.estimators.ground_truth import adjoint
from glep.estimators.metrics import compare
from glep.estimators.nudging import Centred
from glep.estimators.problem import Problem
from glep.estimators.rhel import rhel
from glep.models import coupled_oscillators

# ## The system, defined once
#
# ``coupled_oscillators`` assembles the Lagrangian from terms: a diagonal
# (trainable) mass, on-site springs, spring couplings, an input drive and a
# weak quartic anharmonicity.  The same definition serves every estimator.

model = coupled_oscillators(n=4, T=10.0)
print(model.system)
print("time-reversible:", model.system.is_time_reversible(model.params))

problem = Problem.from_model(model, steps=400)
print(f"loss C_h = {problem.free.loss:.6f}, {problem.parameter_count} parameters")

# ## Ground truth and estimators
#
# The discrete adjoint differentiates exactly the discrete loss ``C_h``.  The
# echo (flip the momentum at ``T``, replay inputs backwards, nudge by ``β``)
# reaches the same gradient with three forward passes, whatever the number of
# parameters.

truth = adjoint(problem)
nudge = Centred(beta=1e-4)
estimates = {
    "CIVP contrast only": civp_contrast(problem, nudge),
    "CIVP + residual": civp_contrast(problem, nudge, residual=True),
    "PFVP (backward)": pfvp(problem, nudge),
    "echo": echo(problem, nudge),
    "RHEL": rhel(problem, nudge),
}
for name, est in estimates.items():
    m = compare(est.theta, truth.theta)
    print(f"{name:20s} cosine {m['cosine']:+.6f}  relative error {m['relative_error']:.2e}  "
          f"passes {est.passes:.0f}")

# The exact estimators agree with the adjoint to the O(β²) nudging error; the
# CIVP contrast without its boundary residual does not.
assert compare(estimates["echo"].theta, truth.theta)["relative_error"] < 1e-6
assert compare(estimates["CIVP contrast only"].theta, truth.theta)["relative_error"] > 1e-2

# ## Gradient with respect to the initial state
#
# The echo also returns ``dC/dq(0)`` and ``dC/dp(0)``.

print("dC/dq(0) echo   :", np.round(estimates["echo"].q0[0], 6))
print("dC/dq(0) adjoint:", np.round(truth.q0[0], 6))

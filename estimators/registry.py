"""Names of nudges and estimators: the one place where strings become objects.

The command line and the configuration file (:mod:`glep.config`,
:mod:`glep.cli`) name nudging schemes and estimators; inside the library
only the objects exist.  :data:`NUDGES` (defined with the nudges in :mod:`glep.estimators.nudging`)
maps a name to the :class:`~glep.estimators.nudging.Nudge` class (a factory
``β -> Nudge``),
:data:`ESTIMATORS` a name to an estimator object
(:class:`~glep.estimators.base.AbstractEstimator`), and :data:`FIELD_ESTIMATORS` a name to a
field estimator object (:class:`~glep.estimators.field_objects.AbstractFieldEstimator`, for the
field systems of :mod:`glep.field_families`).
"""

from __future__ import annotations

from glep.estimators.base import AbstractEstimator
from glep.estimators.cbvp import CBVPContrast, PeriodicContrast
from glep.estimators.contrast import CIVPContrast, Echo, PFVPContrast
from glep.estimators.field_objects import FIELD_ESTIMATORS
from glep.estimators.nudging import NUDGES, nudge_from_name
from glep.estimators.rhel import RHEL

#: estimator name -> estimator object (the rows of ``glep compare``, in this order).  The echo of a
#: comparison measures the bias of a non-reversible system instead of refusing it, without a warning.
#: ``periodic`` (a driven system's periodic trajectory, another loss) runs only when asked for
#: (:data:`DEFAULT_ESTIMATORS`).
ESTIMATORS: dict[str, AbstractEstimator] = {est.name: est for est in (
    CIVPContrast(), CIVPContrast(residual=True), PFVPContrast(), Echo(allow_irreversible=True, warn=False), RHEL(),
    CBVPContrast(), PeriodicContrast(),
)}
#: the rows of ``glep compare`` on an ODE system when none are named
DEFAULT_ESTIMATORS: tuple[str, ...] = tuple(name for name in ESTIMATORS if name != "periodic")


__all__ = ["DEFAULT_ESTIMATORS", "ESTIMATORS", "FIELD_ESTIMATORS", "NUDGES", "nudge_from_name"]

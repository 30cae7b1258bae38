import dolfinx_solver  # noqa: F401  isort: skip  (configures PETSc before dolfinx is imported anywhere)

import glep  # noqa: F401

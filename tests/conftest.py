import glep  # noqa: F401  (configures PETSc before dolfinx is imported anywhere)

r"""Metrics the literature uses to compare a gradient estimate with the truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from glep.errors import InputError


def _flat(g: Mapping[str, np.ndarray], keys) -> np.ndarray:
    return np.concatenate([np.asarray(g[k], dtype=float).ravel() for k in keys])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(a @ b / (na * nb))


def compare(estimate: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray]) -> dict:
    """Cosine (global and per parameter group), norm ratio, relative L2 error, sign agreement."""
    keys = list(truth)
    missing = [k for k in keys if k not in estimate]
    if missing:
        raise InputError(f"estimate is missing parameter group(s) {missing}")
    a, b = _flat(estimate, keys), _flat(truth, keys)
    nb = np.linalg.norm(b)
    nz = np.abs(b) > 1e-12 * max(nb, 1e-300)
    return {
        "cosine": cosine(a, b),
        "norm_ratio": float(np.linalg.norm(a) / nb) if nb else float("nan"),
        "relative_error": float(np.linalg.norm(a - b) / nb) if nb else float("nan"),
        "sign_agreement": float(np.mean(np.sign(a[nz]) == np.sign(b[nz]))) if nz.any() else float("nan"),
        "cosine_per_group": {k: cosine(np.ravel(estimate[k]), np.ravel(truth[k])) for k in keys},
    }


def fit_slope(betas: Sequence[float], errors: Sequence[float], floor: float = 1e-11, ceiling: float = 0.1) -> float:
    """Log–log slope of error versus β in the asymptotic range.

    Points are taken from the largest β down, stopping at the first error that
    falls below ``floor`` (the round-off plateau); non-finite errors (a nudged
    solve that failed at large β) are skipped.  Of these, points with a
    relative error above ``ceiling`` are outside the range where the bias is
    ``c β^p + O(β^{p+1})`` and are left out, unless fewer than two points
    remain (a biased estimator whose error does not depend on β: slope ≈ 0).
    """
    b = np.asarray(betas, dtype=float)
    e = np.asarray(errors, dtype=float)
    order = np.argsort(-b)
    b, e = b[order], e[order]
    keep = []
    for i in range(len(b)):
        if not np.isfinite(e[i]):
            continue
        if e[i] <= floor:
            break
        keep.append(i)
    asymptotic = [i for i in keep if e[i] <= ceiling]
    if len(asymptotic) >= 2:
        keep = asymptotic
    if len(keep) < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log(b[keep]), np.log(e[keep]), 1)
    return float(slope)

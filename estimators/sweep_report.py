r"""Tables and plots of a study (``glep report STUDY.h5``).

A *variant* is one estimator row on one system at one value of every grid key but the seed; its
figures are the mean and standard deviation over the seeds (``±`` in the tables; a single seed has no
spread).  Per variant: the cosine and relative error to the row's ground truth at the report's β,
the fitted bias slope of each nudge (log–log slope of the relative error over β), the cost in passes
and the wall time, and (CSV) the boundary condition of its nudged trajectories (:data:`BOUNDARY`: CIVP,
PFVP by backward integration or an echo, CFVP, CBVP, Periodic).  Failed items are counted, never averaged.

Plots (PNG, matplotlib): relative error versus β with the fitted slopes, one panel per system point;
cost (passes and wall time) versus the number of parameters; the relative error at the report's β per
boundary condition of the nudged trajectories; and, when the study has several horizons ``T``, the
gradient alignment (cosine) versus the horizon.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glep.estimators.study import Study

#: the boundary condition of each row's nudged trajectories (for the per-boundary-condition plot)
BOUNDARY = {"civp-contrast": "CIVP", "civp-residual": "CIVP", "pfvp": "PFVP (backward)", "echo": "PFVP (echo)",
            "rhel": "PFVP (Hamiltonian echo)", "cfvp-contrast": "CFVP", "cfvp-residual": "CFVP", "cbvp": "CBVP",
            "periodic": "Periodic", "field-civp-residual": "CIVP", "field-pfvp": "PFVP (backward)",
            "field-echo": "PFVP (echo)", "field-rhel": "PFVP (Hamiltonian echo)", "heb": "PFVP (Hamiltonian echo)"}

_GRID = ("label", "n", "T", "steps", "batch", "integrator", "backend")


@dataclass
class Variant:
    """One estimator row on one system point, over its seeds."""

    key: tuple
    system: str
    estimator: str
    label: str
    loss: str
    items: list[dict]

    @property
    def ok(self) -> list[dict]:
        return [it for it in self.items if it["status"] == "ok"]

    def stat(self, get) -> tuple[float, float]:
        """Mean and standard deviation (NaN when undefined) of ``get(item)`` over the finished seeds."""
        values = np.asarray([get(it) for it in self.ok], dtype=float)
        values = values[np.isfinite(values)]
        if not values.size:
            return math.nan, math.nan
        return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan


def _describe(params: dict) -> str:
    out = f"{params['label']} n={params['n']} N={params['steps']}"
    if params.get("T") is not None:
        out += f" T={params['T']:g}"
    if params.get("batch") is not None:
        out += f" B={params['batch']}"
    if params.get("integrator"):
        out += f" {params['integrator']}"
    if params.get("backend", "numpy") != "numpy":
        out += f" ({params['backend']})"
    if params.get("options"):
        out += " " + " ".join(f"{k}={v}" for k, v in params["options"].items())
    return out


def variants(study: Study) -> list[Variant]:
    """The study's items grouped over seeds, in the order of the study's expansion."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for item in study.items.values():
        p = item["params"]
        key = (p["system"], *(json_key(p.get(k)) for k in _GRID), json_key(p.get("options")), p["estimator"])
        groups[key].append(item)
    out = []
    for key, items in sorted(groups.items(), key=lambda kv: min(it["index"] for it in kv[1])):
        p = items[0]["params"]
        label = next((it["label"] for it in items if it.get("label")), p["estimator"])
        loss = next((it["loss"] for it in items if it.get("loss")), "")
        out.append(Variant(key, _describe(p), p["estimator"], label, loss, items))
    return out


def json_key(value):
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def _pm(mean: float, std: float, fmt: str) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:{fmt}}" + ("" if math.isnan(std) else f" ± {std:{fmt}}")


def _nudges(study: Study) -> list[str]:
    return list(study.study["estimators"]["nudges"])


def rows(study: Study) -> list[dict]:
    """One dict per variant: the figures of the tables (means, standard deviations, counts)."""
    out = []
    for v in variants(study):
        row = {"system": v.system, "estimator": v.estimator, "label": v.label, "loss": v.loss,
               "boundary": BOUNDARY.get(v.estimator, v.estimator), "seeds": len(v.items),
               "failed": len(v.items) - len(v.ok)}
        for name, get in (("cosine", lambda it: it["metrics"]["cosine"]),
                          ("relative_error", lambda it: it["metrics"]["relative_error"]),
                          ("passes", lambda it: it["passes"]), ("wall_time", lambda it: it["wall_time"])):
            row[name], row[name + "_std"] = v.stat(get)
        for nudge in _nudges(study):
            row[f"slope_{nudge}"], row[f"slope_{nudge}_std"] = v.stat(
                lambda it, nudge=nudge: it["slopes"].get(nudge, math.nan))
        row["reasons"] = sorted({it["reason"] for it in v.items if it["status"] != "ok"})
        out.append(row)
    return out


def markdown(study: Study) -> str:
    """The study's table in Markdown: one row per variant, ``mean ± std`` over seeds; then the losses."""
    spec = study.study["estimators"]
    nudges = _nudges(study)
    head = ["system", "estimator", "seeds", "cosine", "rel. error", *(f"slope {n}" for n in nudges), "passes",
            "wall [s]", "failed"]
    lines = [f"# {study.attrs.get('name', 'study')}: {len(study.items)} of {study.attrs.get('items_total', '?')} "
             f"items finished", "",
             f"Metrics at {spec['report_nudge']} β = {spec['report_beta']:g} against each row's ground truth; "
             "mean ± standard deviation over seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows(study):
        cells = [r["system"], r["label"], str(r["seeds"]), _pm(r["cosine"], r["cosine_std"], ".6f"),
                 _pm(r["relative_error"], r["relative_error_std"], ".2e"),
                 *(_pm(r[f"slope_{n}"], r[f"slope_{n}_std"], ".2f") for n in nudges),
                 _pm(r["passes"], r["passes_std"], ".0f"), _pm(r["wall_time"], r["wall_time_std"], ".3f"),
                 str(r["failed"]) + (f" ({'; '.join(r['reasons'])})" if r["reasons"] else "")]
        lines.append("| " + " | ".join(cells) + " |")
    losses = dict.fromkeys((r["label"], r["loss"]) for r in rows(study))
    lines += ["", "| estimator | loss it differentiates |", "|---|---|"]
    lines += [f"| {label} | {loss} |" for label, loss in losses]
    return "\n".join(lines)


def to_csv(study: Study) -> str:
    """The same figures as CSV (one row per variant; mean and standard deviation in separate columns)."""
    table = rows(study)
    buf = io.StringIO()
    if not table:
        return ""
    fields = [k for k in table[0] if k != "reasons"] + ["reasons"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in table:
        w.writerow({**r, "reasons": "; ".join(r["reasons"])})
    return buf.getvalue()


# -- plots ------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_study(study: Study, folder: str | Path, max_panels: int = 12) -> list[Path]:
    """Write the study's plots into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vs = variants(study)
    paths = [_error_vs_beta(study, vs, folder / "error_vs_beta.png", max_panels),
             _cost(vs, folder / "cost_vs_parameters.png"), _per_boundary(vs, folder / "error_by_boundary.png")]
    horizons = {it["params"].get("T") for it in study.items.values()}
    if len(horizons - {None}) > 1:
        paths.append(_alignment_vs_horizon(vs, folder / "alignment_vs_horizon.png"))
    return paths


def _save(fig, path: Path) -> Path:
    """Lay out, write and close a figure; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _error_vs_beta(study: Study, vs: list[Variant], path: Path, max_panels: int) -> Path:
    plt = _pyplot()
    panels: dict[str, list[Variant]] = defaultdict(list)
    for v in vs:
        panels[v.system].append(v)
    names = list(panels)[:max_panels]
    cols = min(3, max(1, len(names)))
    nrows = math.ceil(len(names) / cols) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    styles = {"one-sided": "--", "centred": "-", "complex": ":"}
    for ax, name in zip(axes.flat, names):
        for i, v in enumerate(panels[name]):
            for nudge in _nudges(study):
                curves = [np.asarray(it["errors"][nudge], dtype=float) for it in v.ok if nudge in it["errors"]]
                if not curves:
                    continue
                betas = np.asarray(v.ok[0]["betas"], dtype=float)
                e = np.maximum(np.nanmedian(np.vstack(curves), axis=0), 1e-17)
                slope = v.stat(lambda it, nudge=nudge: it["slopes"].get(nudge, math.nan))[0]
                ax.loglog(betas, e, styles.get(nudge, "-"), marker="o", ms=3, color=f"C{i}",
                          label=f"{v.label} ({nudge}, slope {slope:.2f})")
                if len(curves) > 1:
                    lo, hi = np.nanmin(np.vstack(curves), axis=0), np.nanmax(np.vstack(curves), axis=0)
                    ax.fill_between(betas, np.maximum(lo, 1e-17), np.maximum(hi, 1e-17), color=f"C{i}", alpha=0.15)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("β")
        ax.set_ylabel("relative error")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    return _save(fig, path)


def _by_estimator(vs: list[Variant]) -> dict[str, list[Variant]]:
    out: dict[str, list[Variant]] = defaultdict(list)
    for v in vs:
        out[v.label].append(v)
    return out


def _cost(vs: list[Variant], path: Path) -> Path:
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (label, group) in enumerate(_by_estimator(vs).items()):
        pts = sorted((v.ok[0]["parameter_count"], v.stat(lambda it: it["passes"])[0],
                      v.stat(lambda it: it["wall_time"])[0]) for v in group if v.ok)
        if not pts:
            continue
        P, passes, wall = map(np.asarray, zip(*pts))
        a.loglog(P, passes, "o-", color=f"C{i}", label=label)
        b.loglog(P, wall, "o-", color=f"C{i}", label=label)
    for ax, what in ((a, "passes (trajectories of N steps)"), (b, "wall time [s]")):
        ax.set_xlabel("number of parameters P")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def by_boundary(vs: list[Variant]) -> dict[str, list[Variant]]:
    """The variants grouped by the boundary condition of their nudged trajectories (:data:`BOUNDARY`)."""
    bcs: dict[str, list[Variant]] = defaultdict(list)
    for v in vs:
        bcs[BOUNDARY.get(v.estimator, v.estimator)].append(v)
    return dict(bcs)


def _per_boundary(vs: list[Variant], path: Path) -> Path:
    plt = _pyplot()
    bcs = by_boundary(vs)
    fig, axes = plt.subplots(1, max(1, len(bcs)), figsize=(4 * max(1, len(bcs)), 3.6), squeeze=False)
    for ax, (bc, group) in zip(axes.flat, bcs.items()):
        for i, (label, sub) in enumerate(_by_estimator(group).items()):
            pts = sorted((v.ok[0]["parameter_count"], v.stat(lambda it: it["metrics"]["relative_error"])[0])
                         for v in sub if v.ok)
            if pts:
                P, err = map(np.asarray, zip(*pts))
                ax.loglog(P, np.maximum(err, 1e-17), "o", color=f"C{i}", label=label)
        ax.set_title(f"nudged trajectories: {bc}", fontsize=8)
        ax.set_xlabel("number of parameters P")
        ax.set_ylabel("relative error at the report's β")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def _alignment_vs_horizon(vs: list[Variant], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, group) in enumerate(_by_estimator(vs).items()):
        pts = sorted((v.ok[0]["params"]["T"], v.stat(lambda it: it["metrics"]["cosine"])[0])
                     for v in group if v.ok and v.ok[0]["params"].get("T") is not None)
        if pts:
            T, cos = map(np.asarray, zip(*pts))
            ax.plot(T, cos, "o-", color=f"C{i}", label=label)
    ax.set_xlabel("horizon T")
    ax.set_ylabel("cosine to the ground truth")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)

"""The compiled path on another device, and its bounded caches.

No GPU is available where this suite runs, so "runs on a GPU with nothing to change" is checked the closest
honest way: XLA's CPU platform split into two devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``,
in a fresh interpreter, since the flag is read when JAX starts), the echo, RHEL and the discrete adjoint run
under ``jax.default_device(jax.devices()[1])``.  Every compiled loop's outputs must live on that device (so
nothing in :mod:`glep.ivp.compiled` pins a platform or a device: it follows JAX's default, which is a GPU
when one is installed), and the results must equal those computed on device 0 (1e-12 relative; the same
XLA program on the same kind of device, so in practice bit for bit).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the compiled path needs the optional extra JAX: pip install 'glep[jax]'")

from glep.estimators.contrast import echo  # noqa: E402
from glep.estimators.ground_truth import adjoint  # noqa: E402
from glep.estimators.nudging import Centred  # noqa: E402
from glep.estimators.problem import Problem  # noqa: E402
from glep.ivp import StormerVerlet, compiled, integrate  # noqa: E402
from glep.models import FAMILIES  # noqa: E402

TIGHT = 1e-12

_CHILD = textwrap.dedent('''
    import json, sys
    import numpy as np
    import jax
    from glep.ivp import StormerVerlet, compiled
    from glep.estimators.contrast import echo
    from glep.estimators.rhel import rhel
    from glep.estimators.ground_truth import adjoint
    from glep.estimators.nudging import Centred
    from glep.estimators.problem import Problem
    from glep.models import FAMILIES

    seen = []  # the devices every compiled loop's outputs live on
    original = compiled._jitted

    def spy(*args, **kw):
        fn = original(*args, **kw)

        def run(*a):
            out = fn(*a)
            seen.extend(str(d) for leaf in jax.tree_util.tree_leaves(out) for d in leaf.devices())
            return out
        return run

    compiled._jitted = spy
    family, kw, variant = json.loads(sys.argv[1])
    model = FAMILIES[family](**kw)
    rng = np.random.default_rng(variant)
    params = {k: v * (1 + 0.05 * rng.uniform(-1, 1, np.shape(v))) for k, v in model.params.items()}
    grid = Problem.from_model(model, steps=60).grid
    out = {"devices": [str(d) for d in jax.devices()], "runs": []}
    for index in (0, 1):
        seen.clear()
        with jax.default_device(jax.devices()[index]):
            pr = Problem(model.system, params, model.boundary, grid, StormerVerlet(backend="jax"))
            grads = {name: {k: v.tolist() for k, v in est().theta.items()}
                     for name, est in (("echo", lambda: echo(pr, Centred(1e-3))),
                                       ("rhel", lambda: rhel(pr, Centred(1e-3))),
                                       ("adjoint", lambda: adjoint(pr)))}
        out["runs"].append({"seen": sorted(set(seen)), "count": len(seen), "grads": grads})
    print(json.dumps(out))
''')


@pytest.mark.parametrize("family,kw,variant", [("hru_logcosh", {"batch": 3, "hidden": 4}, 1),
                                               ("coupled_oscillators", {"n": 3, "batch": 2}, 2)])
def test_runs_on_the_default_device(family, kw, variant):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([family, kw, variant])], capture_output=True,
                          text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(data["devices"]) == 2, data["devices"]
    for index, run in enumerate(data["runs"]):
        assert run["count"] > 0, "no compiled loop ran"
        assert run["seen"] == [data["devices"][index]], (index, run["seen"])
    first, second = (run["grads"] for run in data["runs"])
    for name in first:
        for key in first[name]:
            a, b = np.asarray(first[name][key]), np.asarray(second[name][key])
            assert np.max(np.abs(a - b)) <= TIGHT * max(np.max(np.abs(a)), 1e-300), (name, key)


def test_no_platform_or_device_pinned():
    """The module never names a platform or device: it runs where JAX's default device is."""
    text = Path(compiled.__file__).read_text()
    for pin in ("jax.devices(", "device_put", "default_device", "JAX_PLATFORMS", "jax_platform", "\"gpu\"", "'gpu'",
                "\"cpu\"", "'cpu'"):
        assert pin not in text, pin


# -- bounded caches ----------------------------------------------------------------------------------------
def _problem(n: int):
    model = FAMILIES["hru_linear"](n=n)
    return Problem.from_model(model, steps=20, integrator=StormerVerlet(backend="jax"))


def test_clear_cache_releases_compiled_loops():
    compiled.clear_cache()
    pr = _problem(3)
    q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
    before = integrate(pr.dl(0.0), q0, p0, store=False)
    info = compiled.cache_info()
    assert info["systems"] == 1 and info["loops"] >= 2, info
    held = [weakref.ref(entry[1]) for entry in compiled._JITS.values()]
    held += [weakref.ref(p) for p in compiled._PIECES.values()]
    compiled.clear_cache()
    gc.collect()
    assert compiled.cache_info() == {"systems": 0, "loops": 0, "size": compiled.CACHE_SIZE}
    assert all(ref() is None for ref in held), "a compiled loop outlived clear_cache()"
    after = integrate(pr.dl(0.0), q0, p0, store=False)  # compiled again, the same numbers
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_caches_are_bounded(monkeypatch):
    compiled.clear_cache()
    monkeypatch.setattr(compiled, "CACHE_SIZE", 3)
    problems = [_problem(n) for n in (2, 3, 4, 5)]  # four systems (new term objects each)
    for pr in problems:
        q0, p0, _ = pr.boundary.states(pr.system, pr.theta)
        integrate(pr.dl(0.0), q0, p0, store=False)
        info = compiled.cache_info()
        assert info["systems"] <= 3 and info["loops"] <= 3, info
    assert compiled.cache_info()["systems"] == 3
    # the most recent system is kept; the first was dropped and is prepared again on demand
    last = compiled._pieces(problems[-1].system)
    assert compiled._pieces(problems[-1].system) is last
    ref = compiled._pieces(problems[0].system)
    assert ref.system is problems[0].system
    compiled.clear_cache()


def test_echo_after_clear_cache_equal():
    pr = _problem(4)
    a = echo(pr, Centred(1e-3)).theta
    compiled.clear_cache()
    b = echo(pr.with_params(pr.params), Centred(1e-3)).theta
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_systems_of_equal_terms_share_one_compilation():
    """Freshly built models of one family and size (other seeds: other parameters, new term objects) share
    the compiled loops — θ is an argument, the terms' structure the key — and give their own numbers;
    another size, or another family, is another compilation."""
    compiled.clear_cache()
    runs = {}
    for family, n, seed in [("hru_logcosh", 3, 0), ("hru_logcosh", 3, 1), ("hru_logcosh", 4, 0),
                            ("coupled_oscillators", 3, 0)]:
        jax_pr = Problem.from_model(FAMILIES[family](n=n, seed=seed), steps=20, integrator=StormerVerlet(backend="jax"))
        np_pr = Problem.from_model(FAMILIES[family](n=n, seed=seed), steps=20)
        got, want = adjoint(jax_pr).theta, adjoint(np_pr).theta
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14 * np.max(np.abs(want[k])))
        runs[family, n, seed] = compiled.cache_info()["systems"]
    assert list(runs.values()) == [1, 1, 2, 3], runs
    compiled.clear_cache()

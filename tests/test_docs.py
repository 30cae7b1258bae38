"""The documentation: Sphinx builds it warning-free, the reference covers the public API, the guide's code runs."""

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import glep

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
GLEP = Path(sys.executable).with_name("glep")


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(DOCS), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def test_sphinx_builds_without_warnings(html):
    for page in ("index", "guide", "architecture", "theory", "api"):
        assert (html / f"{page}.html").exists(), page


def test_the_reference_documents_every_public_name(html):
    page = (html / "api.html").read_text()
    anchors = set(re.findall(r'id="(glep\.[A-Za-z_]+)"', page)) | set(re.findall(r'id="module-(glep\.\w+)"', page))
    missing = [name for name in glep.__all__ if f"glep.{name}" not in anchors]
    assert not missing, f"not in docs/api.rst: {missing}"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_the_guide_runs(tmp_path, monkeypatch):
    """Every Python block of docs/guide.md, in order, in one namespace; its claims hold."""
    monkeypatch.chdir(tmp_path)
    # the last block reads the results of a `glep compare` run
    cli = subprocess.run([str(GLEP), "compare", "--steps", "40", "--estimators", "pfvp", "echo", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    blocks = _python_blocks(DOCS / "guide.md")
    assert len(blocks) == 9
    import importlib.util

    has_jax = importlib.util.find_spec("jax") is not None
    if not has_jax:  # block 8 needs the optional extra glep[jax]
        blocks = blocks[:7] + blocks[8:]
    namespace = {"__name__": "__guide__"}
    outputs = []
    for i, block in enumerate(blocks):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"docs/guide.md, Python block {i + 1}", "exec"), namespace)
        outputs.append(out.getvalue())
    # 1: RHEL, echo and PFVP agree with the discrete adjoint to the O(β²) error of the centred nudge
    errors = [float(e) for e in re.findall(r"relative error ([0-9.e+-]+)", outputs[0])]
    assert len(errors) == 3 and max(errors) < 1e-6, outputs[0]
    # 2: the comparison table has a row per estimator
    assert all(label in outputs[1] for label in ("PFVP", "echo", "RHEL")), outputs[1]
    # 3: deflation finds Newton's solution among others, each with a Morse index; the minima have index 0
    solutions, newton = namespace["solutions"], namespace["sol"]
    assert len(solutions) >= 2, outputs[2]
    assert any(np.allclose(s.q, newton.q, rtol=1e-6, atol=1e-6) for s in solutions), outputs[2]
    assert all(s.morse_index is not None for s in solutions)
    assert min(s.morse_index for s in solutions) == 0, outputs[2]
    # 4: the results file lists the estimators that ran, and the free trajectory
    assert "pfvp ok" in outputs[3] and "echo ok" in outputs[3], outputs[3]
    assert namespace["free"].q.shape[0] == 41
    # 5: HEB agrees with the discrete adjoint of the Kerr cavity array; averaged HEB updates lower the loss
    assert float(re.findall(r"relative error ([0-9.e+-]+)", outputs[4])[0]) < 1e-6, outputs[4]
    assert namespace["run"].problem.loss() < namespace["run"].losses[0], outputs[4]
    # 6 (after the finite-nudging section's shell block): the echo on a 2-D sine-Gordon field matches the
    # checkpointed discrete adjoint (serial here: the norms are of this rank's dofs)
    assert float(re.findall(r"relative error ([0-9.e+-]+)", outputs[5])[0]) < 1e-6, outputs[5]
    # 7: the CBVP contrast on a space-time wave solution matches the FE discrete adjoint
    assert float(re.findall(r"relative error ([0-9.e+-]+)", outputs[6])[0]) < 1e-6, outputs[6]
    # 8: the compiled path's echo equals the NumPy path's (the block asserts it to 1e-12)
    if has_jax:
        assert namespace["compiled"].integrator.backend == "jax" and set(namespace["fast"].theta) == set(
            namespace["slow"].theta)
    # 9: a NumPy term of one's own with the fast hooks: the composed force is the sum of the terms' gradients
    # to round-off, and the echo matches the discrete adjoint
    last = outputs[-1]
    assert float(re.findall(r"gradients: ([0-9.e+-]+)", last)[0]) <= 64 * np.finfo(float).eps * (
        np.max(np.abs(namespace["summed"]))), last
    assert float(re.findall(r"relative error ([0-9.e+-]+)", last)[0]) < 1e-6, last

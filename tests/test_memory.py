"""glep.memory: malloc tuning on import, and its opt-out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import glep.memory


def _tuned_in_subprocess(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("GLEP_MALLOC_DEFAULTS", None)
    if env_value is not None:
        env["GLEP_MALLOC_DEFAULTS"] = env_value
    code = "import glep.memory as m; print(m.malloc_tuned())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_import_tunes_malloc_unless_opted_out():
    assert _tuned_in_subprocess(None) == "True"
    assert _tuned_in_subprocess("1") == "False"


def test_retain_freed_memory_reports_success():
    assert glep.memory.retain_freed_memory() is sys.platform.startswith("linux")

"""The README's Python example runs and prints the comparison it computes; the README links only inside the repo."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_example_runs_and_prints_the_comparison():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has a Python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__readme__"})
    line = out.getvalue().strip()
    match = re.search(r"relative error ([0-9.e+-]+)", line)
    assert match and float(match.group(1)) < 1e-6, line


def test_readme_links_stay_inside_the_repository():
    links = re.findall(r"\]\(([^)]+)\)", README.read_text())
    for link in links:
        assert not link.startswith(("..", "/", "http")), link
        assert (README.parent / link.split("#")[0]).exists(), link

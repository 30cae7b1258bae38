"""docs/guide.md §12 and examples/train*.toml: every configuration of the section is valid, each one that names
an example is that example, and each new one runs as written (the report of the CBVP run too)."""

import tomllib
from pathlib import Path

import pytest

from glep.cli import main
from glep.estimators.train import PLOT, RESULTS, run_training
from glep.estimators.train_report import ALIGNMENT_PLOT
from glep.ivp import compiled
from glep.train_config import train_config

ROOT = Path(__file__).resolve().parents[1]
SECTION = (ROOT / "docs" / "guide.md").read_text().split("## 12. Training")[1].split("\n## 13.")[0]
BLOCKS = [b.split("```")[0] for b in SECTION.split("```toml\n")[1:]]


def _example(block: str) -> Path | None:
    first = block.splitlines()[0]
    return ROOT / first[2:].strip() if first.startswith("# examples/") else None


def test_every_configuration_of_the_section_is_valid():
    assert len(BLOCKS) == 4
    for block in BLOCKS:
        train_config(tomllib.loads(block))


@pytest.mark.parametrize("name", ["train_cbvp.toml", "train_kerr.toml"])
def test_the_guides_configurations_are_the_examples(name):
    blocks = [b for b in BLOCKS if _example(b) == ROOT / "examples" / name]
    assert len(blocks) == 1
    guide = train_config(tomllib.loads(blocks[0]))
    example = train_config(tomllib.loads((ROOT / "examples" / name).read_text()))
    assert guide.training_dict() == example.training_dict() and guide.run == example.run


@pytest.mark.parametrize("name", ["train_cbvp.toml", "train_kerr.toml"])
def test_the_examples_run_as_written_and_report(tmp_path, capsys, name):
    out = tmp_path / "out"
    assert main(["train", str(ROOT / "examples" / name), "--output", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    rows = {line.split()[0]: float(line.split()[2]) for line in table.splitlines()[1:]}  # run -> gap to adjoint
    assert set(rows) >= {"adjoint"} and len(rows) >= 2
    assert all(gap <= 0.1 for gap in rows.values()), table
    assert {p.name for p in out.iterdir()} >= {RESULTS, PLOT, ALIGNMENT_PLOT}
    assert main(["report", str(out / RESULTS), "--csv", str(tmp_path / "t.csv"), "--plots", str(tmp_path / "p")]) == 0
    assert "| run | final train loss |" in capsys.readouterr().out
    assert (tmp_path / "t.csv").read_text().startswith("run,") and (tmp_path / "p" / ALIGNMENT_PLOT).exists()


@pytest.mark.skipif(not compiled.available(), reason="the compiled path needs the optional extra JAX")
def test_the_jax_configuration_runs_as_written(tmp_path):
    block = [b for b in BLOCKS if 'backend = "jax"' in b]
    assert len(block) == 1
    outcome = run_training(train_config(tomllib.loads(block[0]), {"output": str(tmp_path / "jax")}))
    assert outcome.finished and (tmp_path / "jax" / RESULTS).exists()

"""A study from Python: declare it as a dict, run it, read the file back, print its table.

The same study as a TOML file runs with ``glep sweep``; see docs/guide.md, section 7.
"""

from glep.estimators.study import load_study
from glep.estimators.sweep import run_sweep
from glep.estimators.sweep_report import markdown, rows
from glep.sweep_config import sweep_config

study = {
    "name": "api",
    "systems": [{"family": "hru_linear", "n": [4, 8], "steps": 40, "seeds": [0, 1]}],
    "estimators": {"names": ["rhel", "pfvp", "civp-contrast"], "nudges": ["centred"], "betas": [1e-2, 1e-3, 1e-4]},
    "run": {"output": "sweep-api/study.h5"},
}
config = sweep_config(study)  # validated before any work: an unknown key or a bad value raises InputError
outcome = run_sweep(config, resume=True)  # resume=True: a second run redoes nothing
print(f"{outcome.now} items run, {outcome.before} finished before, {outcome.total} in the study")

result = load_study(config.run.output)
print(markdown(result))
# the figures as dicts: RHEL and PFVP are exact (bias O(β²)), the CIVP contrast omits R(T) and is biased
for row in rows(result):
    print(f"{row['label']:>14} on {row['system']}: relative error {row['relative_error']:.1e}")

"""Options of ``glep compare``: one validation for the command line and TOML files.

Every option reaches :class:`CompareConfig` as the raw value the user wrote
(a string from the command line, a TOML value from ``--config``); the same
pydantic rules check both, before any work starts.  An error names the
offending key and where it came from, e.g.
``config key 'steps': expected an integer, got 'abc'`` or
``option --betas: expected a finite number > 0, got '-1e-3'``.

Rules: ``n`` an integer >= 2 (every family couples two or more); ``steps`` an
integer >= 1; ``T`` finite > 0 or absent; ``batch`` an integer >= 1 or absent;
``gamma`` finite; ``betas`` a non-empty list of finite numbers > 0;
``report_beta`` finite > 0; ``system``, ``integrator``, ``nudges`` and
``estimators`` among their known names (listed in the message; nudges and
estimators are those of the one registry, :mod:`glep.estimators.registry`); ``seed`` an
integer >= 0; ``backend`` ``"numpy"`` (default) or ``"jax"`` (the jit-compiled Störmer–Verlet loops of
:mod:`glep.ivp.compiled`: refused, naming the option and the reason, when JAX is not installed, the
integrator is implicit or the system cannot be compiled); a string where a list is expected is an
error (no splitting into letters); unknown keys are named.

Field systems (:data:`glep.field_families.FIELD_FAMILIES`: ``sine-gordon``, ``klein-gordon``,
``wave``, ``nls``, ``kerr``) take ``n`` as the number of mesh cells (the lattice side for ``kerr``) and
only their own estimators (:data:`glep.estimators.registry.FIELD_ESTIMATORS`; ``kerr``: ``heb``;
``nls``: ``echo``, ``heb``); ``batch``, ``integrator`` and ``backend = "jax"`` do not apply to them
(the leapfrog / midpoint / Strang steps).  ``n``,
``steps`` and ``estimators`` left out are the system's defaults.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from glep.errors import InputError
from glep.estimators.registry import DEFAULT_ESTIMATORS, ESTIMATORS, FIELD_ESTIMATORS, NUDGES
from glep.field_families import FIELD_FAMILIES
from glep.ivp.discrete import BACKENDS
from glep.ivp.integrators import INTEGRATORS
from glep.models import FAMILIES


def _no_bool(value: Any) -> Any:
    """TOML ``true``/``false`` are not numbers (pydantic's lax mode would read them as 1/0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


def _strip(value: Any) -> Any:
    """Command-line numbers may carry the leading space that protects a negative value from argparse."""
    return value.strip() if isinstance(value, str) else value


def _no_string_list(value: Any) -> Any:
    """A string where a list is expected is refused (it would otherwise be read letter by letter)."""
    if isinstance(value, str):
        raise ValueError(f"expected a list, e.g. [{value!r}], got the string {value!r}")
    return value


_Num = [BeforeValidator(_no_bool), BeforeValidator(_strip)]
Count = Annotated[int, Field(ge=1), *_Num]
Size = Annotated[int, Field(ge=2), *_Num]  # every model family couples at least two degrees of freedom
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False), *_Num]
Finite = Annotated[float, Field(allow_inf_nan=False), *_Num]
Seed = Annotated[int, Field(ge=0), *_Num]
System = Literal[tuple(sorted(FAMILIES)) + tuple(FIELD_FAMILIES)]
Integrator = Literal[tuple(sorted(INTEGRATORS))]
Backend = Literal[BACKENDS]
Nudge = Literal[tuple(NUDGES)]
Estimator = Literal[tuple(ESTIMATORS) + tuple(k for k in FIELD_ESTIMATORS if k not in ESTIMATORS)]

#: ``n``, ``steps`` and ``estimators`` of the ODE families when left out
_ODE_DEFAULTS = {"n": 4, "steps": 400, "estimators": list(DEFAULT_ESTIMATORS)}


def family_defaults(system: str) -> dict[str, Any]:
    """``n``, ``steps`` and ``estimators`` of a system when left out (empty for an unknown name)."""
    if system in FIELD_FAMILIES:
        fam = FIELD_FAMILIES[system]
        return {"n": fam.n, "steps": fam.steps, "estimators": list(fam.estimators)}
    return dict(_ODE_DEFAULTS) if system in FAMILIES else {}


def _names(kind):
    return Annotated[list[kind], Field(min_length=1), BeforeValidator(_no_string_list)]


class CompareConfig(BaseModel):
    """Validated options of ``glep compare`` (defaults: the embedded example)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: System = "coupled_oscillators"
    n: Size | None = None
    T: Positive | None = None
    steps: Count | None = None
    batch: Count | None = None
    integrator: Integrator | None = None
    backend: Backend = "numpy"
    gamma: Finite = 0.1
    betas: Annotated[list[Positive], Field(min_length=1), BeforeValidator(_no_string_list)] = \
        [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]
    nudges: _names(Nudge) = ["one-sided", "centred"]
    estimators: _names(Estimator) | None = None
    report_beta: Positive = 1e-4
    output: Annotated[str, Field(min_length=1)] = "glep-output"
    seed: Seed = 0

    @model_validator(mode="before")
    @classmethod
    def _system_defaults(cls, data: Any) -> Any:
        """``n``, ``steps``, ``estimators`` left out (or ``None``) take the system's defaults."""
        if not isinstance(data, Mapping):
            return data
        system = _strip(data.get("system") or "coupled_oscillators")
        fill = family_defaults(system) if isinstance(system, str) else {}
        return {**{k: v for k, v in fill.items() if data.get(k) is None}, **{k: v for k, v in data.items()
                                                                                if v is not None or k not in fill}}

    @field_validator("nudges", "estimators")
    @classmethod
    def _distinct(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return names
        repeated = sorted({x for x in names if names.count(x) > 1})
        if repeated:
            raise ValueError(f"each name may appear once, repeated: {repeated}")
        return names


#: the keys a TOML file or the command line may set
KEYS = tuple(CompareConfig.model_fields)
DEFAULTS = CompareConfig().model_dump()


def _describe(err: Mapping[str, Any]) -> str:
    """What a pydantic error expected, in the words of the CLI."""
    kind, ctx = err["type"], err.get("ctx") or {}
    what = {
        "int_parsing": "expected an integer", "int_type": "expected an integer",
        "int_from_float": "expected an integer", "float_parsing": "expected a number",
        "float_type": "expected a number", "finite_number": "expected a finite number",
        "string_type": "expected a string", "list_type": "expected a list",
        "too_short": "expected a non-empty list", "string_too_short": "expected a non-empty string",
    }.get(kind)
    if kind == "greater_than":
        what = f"expected a finite number > {ctx['gt']:g}"
    elif kind == "greater_than_equal":
        what = f"expected an integer >= {ctx['ge']}"
    elif kind == "literal_error":
        what = f"expected one of {ctx['expected']}"
    elif kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return what or err["msg"]


def _format(exc: ValidationError, sources: Mapping[str, str], config: Path | None) -> str:
    """One line per problem, naming the key (``option --steps`` or ``config key 'steps'``)."""
    unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"]
    lines = []
    if unknown:
        where = "" if config is None else f"--config {config}: "
        lines.append(f"{where}unknown option(s) {unknown}; known: {list(KEYS)}")
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            continue
        key = str(err["loc"][0])
        label = sources.get(key, f"config key {key!r}")
        item = [x for x in err["loc"][1:] if isinstance(x, int)]
        if item:
            label += f" (item {item[0] + 1})"
        text = _describe(err)
        if err["type"] != "value_error":
            text += f", got {err['input']!r}"
        lines.append(f"{label}: {text}")
    return "\n".join(lines)


def load_toml(path: Path, *, prefix: str = "", name: str = "file", kind: str = "a TOML file") -> dict[str, Any]:
    """A TOML file as a dict; :class:`InputError` naming the file (as ``name``, after ``prefix``) if unreadable."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise InputError(f"{prefix}{name} {str(path)!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{prefix}{str(path)!r} is a folder, not {kind}") from exc
    except OSError as exc:
        raise InputError(f"{prefix}cannot read {str(path)!r} ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{prefix}{path} is not valid TOML: {exc}") from exc


def key_path(loc: tuple) -> str:
    """``('systems', 0, 'n', 1)`` -> ``systems[0].n[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_validation(exc: ValidationError, where: str, tables: Mapping[str, tuple[str, ...]]) -> str:
    """The errors of a nested configuration (``glep sweep``, ``glep train``), one line per key.

    ``tables`` maps each table name (``""``: the top level) to its known keys, listed for an unknown key.
    """
    lines = []
    for err in exc.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith(("function-", "list["))))
        key = key_path(loc)
        if err["type"] == "extra_forbidden":
            table = loc[0] if len(loc) > 1 else ""
            lines.append(f"{where}config key {key!r}: unknown key; known in "
                         f"{'the top level' if not table else repr(table)}: {list(tables.get(table, ()))}")
        elif err["type"] == "missing":
            lines.append(f"{where}config key {key!r}: missing")
        else:
            text = _describe(err)
            if err["type"] not in ("value_error", "assertion_error"):
                text += f", got {err['input']!r}"
            lines.append(f"{where}config key {key!r}: {text}" if key else f"{where}{text}")
    return "\n".join(lines)


def validate_tables(model: type, data: Mapping[str, Any] | Path, overrides: Mapping[str, Any] | None, *,
                    read: Callable[[Path], dict[str, Any]], tables: Mapping[str, tuple[str, ...]]):
    """``model(**data)`` for a nested configuration (a TOML path, read by ``read``, or its dict), the
    non-None ``overrides`` (the command line) set in its ``run`` table; :class:`InputError` with one line
    per problem (:func:`format_validation`), prefixed by the file's path."""
    where = ""
    if isinstance(data, Path):
        where, data = f"{data}: ", read(data)
    values = dict(data)
    run = {k: v for k, v in (overrides or {}).items() if v is not None}
    if run:
        table = values.get("run", {})
        values["run"] = {**table, **run} if isinstance(table, dict) else table
    try:
        return model(**values)
    except ValidationError as exc:
        raise InputError(format_validation(exc, where, tables)) from None


def read_toml(path: Path) -> dict[str, Any]:
    """The options in a TOML file: top level, or the ``[compare]`` table."""
    data = load_toml(path, prefix="--config: ")
    if "compare" in data:
        table, rest = data["compare"], sorted(set(data) - {"compare"})
        if not isinstance(table, dict):
            raise InputError(f"--config: {path}: 'compare' must be a table ([compare]), got {table!r}")
        if rest:
            raise InputError(f"--config: {path}: keys {rest} lie outside the [compare] table")
        return dict(table)
    return data


def compare_config(cli: Mapping[str, Any], config: Path | None = None) -> CompareConfig:
    """Merge defaults, the TOML file and command-line values (which win); validate them all at once.

    Arguments: ``cli`` maps option keys to the raw strings (or lists of strings) argparse read,
    ``None`` for an option not given; ``config`` the ``--config`` file, if any.
    Returns the validated :class:`CompareConfig`; raises :class:`InputError` naming every bad key.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config is not None:
        for key, val in read_toml(config).items():
            values[key], sources[key] = val, f"config key {key!r}"
    for key, val in cli.items():
        if val is not None:
            values[key], sources[key] = val, f"option --{key.replace('_', '-')}"
    try:
        cfg = CompareConfig(**values)
    except ValidationError as exc:
        raise InputError(_format(exc, sources, config)) from None
    _check_system_options(cfg, sources)
    _check_backend(cfg, sources)
    return cfg


def ode_model(cfg: Mapping[str, Any]):
    """The model of an ODE family (``cfg``: the validated options, :meth:`CompareConfig.model_dump`)."""
    from glep.models import FAMILIES

    kw = {"n": cfg["n"], "batch": cfg["batch"], "seed": cfg["seed"]}
    if cfg["system"] == "gyroscopic":
        kw["gamma"] = cfg["gamma"]
    if cfg["T"] is not None:
        kw["T"] = cfg["T"]
    return FAMILIES[cfg["system"]](**kw)


BACKEND_KEY, INTEGRATOR_KEY = "config key 'backend'", "config key 'integrator'"


def _check_backend(cfg: CompareConfig, sources: Mapping[str, str]) -> None:
    """``backend = "jax"`` needs JAX, the explicit Störmer–Verlet loop and a system the compiled path can run."""
    if cfg.backend == "numpy":
        return
    from glep.ivp import compiled

    where = sources.get("backend", BACKEND_KEY)
    if not compiled.available():
        raise InputError(f"{where}: backend 'jax' needs the optional extra JAX (pip install 'glep[jax]'), "
                         "which is not installed; use backend 'numpy'")
    if cfg.integrator is not None and cfg.integrator not in ("stormer-verlet", "trapezoid"):
        raise InputError(f"{where}: backend 'jax' compiles the explicit Störmer–Verlet loop; "
                         f"{sources.get('integrator', INTEGRATOR_KEY)} {cfg.integrator!r} is implicit "
                         "(use 'stormer-verlet' or backend 'numpy')")
    reason = compiled.unsupported_reason(ode_model(cfg.model_dump()).system)
    if reason is not None:
        raise InputError(f"{where}: backend 'jax' cannot run the system {cfg.system!r}: {reason}; "
                         "use backend 'numpy'")


def _check_system_options(cfg: CompareConfig, sources: Mapping[str, str]) -> None:
    """Options that do not apply to the chosen system (field or ODE) are errors naming the choices."""
    field = cfg.system in FIELD_FAMILIES
    if cfg.system in ("kerr", "nls"):  # HEB of the Strang map; the conjugation echo of the midpoint rule
        allowed = list(FIELD_FAMILIES[cfg.system].estimators)
    else:
        allowed = list(FIELD_ESTIMATORS) if field else list(ESTIMATORS)
    wrong = [e for e in cfg.estimators if e not in allowed]
    if wrong:
        where = sources.get("estimators", "config key 'estimators'")
        raise InputError(f"{where}: {wrong} do not apply to system {cfg.system!r}; choose from {allowed}")
    if field:
        if cfg.backend != "numpy":
            raise InputError(f"{sources.get('backend', BACKEND_KEY)}: backend {cfg.backend!r} does not "
                             f"apply to the field system {cfg.system!r} (the compiled path is the ODE "
                             "Störmer–Verlet loop)")
        for key in ("batch", "integrator"):
            if getattr(cfg, key) is not None:
                raise InputError(f"{sources.get(key, f'config key {key!r}')}: does not apply to the field system "
                                 f"{cfg.system!r} (it steps with its own integrator, one input)")


def check_output_folder(path: Path) -> None:
    """Make sure results can be written to ``path``: create it, then create and remove a temporary file.

    Raises :class:`InputError` if it is a file, cannot be created or is not writable.
    """
    if path.exists() and not path.is_dir():
        raise InputError(f"--output: {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--output: cannot create the folder {str(path)!r} ({exc.strerror})") from exc
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".glep-write-test-")
    except OSError as exc:
        raise InputError(f"--output: the folder {str(path)!r} is not writable ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(probe)

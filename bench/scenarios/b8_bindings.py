"""B8: the per-entity work of a create task — CEL bindings and JSON Schema validation — through zonecat's own code,
next to the bare library calls on the same data, in process.

The data is the shipped Linear package (zonecat/catalog/linear.yaml): its install inputs, its input bindings, and
its ``linear`` provider entity, whose bindings are the longest of the catalog.

* CEL: cel-expr-python compiled once, then ``expression.eval(data=…).plain_value()`` (the library's own conversion
  to Python) vs ``zonecat.domain.bindings.compile_binding(…).evaluate(…)`` (cached compile, activation checks,
  zonecat's bounded result conversion).
* Validation: a cached ``jsonschema.Draft202012Validator(schema, format_checker=FormatChecker()).validate(…)``
  vs ``zonecat.domain.schemas.validate_instance(…)`` (defaults applied, problems collected), for the install inputs
  and for the provider's attributes. The bare call validates the instance zonecat validates: for the inputs, with
  the schema's defaults applied.
* Entity step: the provisioner's ``TaskRun._entity_attributes`` (bindings + validation of one entity) vs the bare
  CEL call plus the bare validation of its result.

Each figure is the best of 7 loops, in µs per call; zonecat's and the bare loops alternate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import yaml

from bench.report import Check, Outcome, at_most, info

MAX_RATIO = 2.0
INPUTS = {"client_id": "lin_0123456789abcdef", "client_secret": "s3cr3t-s3cr3t-s3cr3t"}


def _loop_us(fn: Callable[[], object], number: int) -> float:
    started = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - started) / number * 1e6


def per_call_us(*fns: Callable[[], object], seconds: float, rounds: int = 7) -> list[float]:
    """µs per call of each function: the best of ``rounds`` loops, the functions' loops alternating within each
    round so that all of them see the same machine (it is shared), ``seconds`` in all per function."""
    numbers = []
    for fn in fns:
        once = max(_loop_us(fn, 1), 0.1) / 1e6
        numbers.append(max(10, int(seconds / rounds / once)))
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for index, fn in enumerate(fns):
            best[index] = min(best[index], _loop_us(fn, numbers[index]))
    return best


def run(quick: bool) -> Outcome:
    from cel_expr_python import cel
    from cel_expr_python.ext import ext_strings
    from jsonschema import Draft202012Validator, FormatChecker

    from zonecat.domain import bindings, schemas
    from zonecat.domain.entity_types import ENTITY_TYPES
    from zonecat.domain.manifest import Manifest, effective_input_schema

    seconds = 0.5 if quick else 2.0
    raw = yaml.safe_load(resources.files("zonecat").joinpath("catalog", "linear.yaml").read_text(encoding="utf-8"))
    manifest = Manifest.from_raw(raw)
    input_schema = effective_input_schema(manifest.kind, manifest.inputs_schema)
    validated, problems = schemas.validate_instance(input_schema, INPUTS, "inputs")
    if problems:
        raise RuntimeError(f"the bench inputs do not validate: {problems}")
    assert isinstance(validated, dict)
    if not manifest.inputs_bindings:
        raise RuntimeError("linear.yaml has no input bindings any more; B8 needs them")
    entity_inputs = bindings.compile_binding(manifest.inputs_bindings, variables=["pkg"]).evaluate(
        {"pkg": {"inputs": validated}}
    )
    activation = {"entities": {"inputs": entity_inputs}}
    source = manifest.entities["linear"].bindings
    provider_schema = ENTITY_TYPES[manifest.entities["linear"].type].schema

    # The bare libraries.
    env = cel.NewEnv(variables={"entities": cel.Type.DYN}, extensions=[ext_strings.ExtStrings()])
    expression = env.compile(source)
    attributes = expression.eval(data=activation).plain_value()
    input_validator = Draft202012Validator(input_schema, format_checker=FormatChecker())
    provider_validator = Draft202012Validator(provider_schema, format_checker=FormatChecker())
    zonecat_attributes = bindings.compile_binding(source, variables=["entities"]).evaluate(activation)
    if attributes != zonecat_attributes:
        raise RuntimeError("zonecat's binding result differs from the library's")
    provider_validator.validate(attributes)

    def bare_step() -> None:
        provider_validator.validate(expression.eval(data=activation).plain_value())

    # zonecat's paths. _entity_attributes reads nothing of the task run itself, so an empty one will do.
    from zonecat.engine.provisioner import TaskRun

    run_self = object.__new__(TaskRun)

    def zonecat_step() -> object:
        return TaskRun._entity_attributes(run_self, manifest, "linear", {"inputs": entity_inputs})

    step_note = "TaskRun._entity_attributes"
    try:
        if zonecat_step() != attributes:
            raise RuntimeError("the provisioner's entity attributes differ from the library's")
        step: Callable[[], object] | None = zonecat_step
    except (AttributeError, TypeError) as exc:  # the provisioner's internals changed: report it, do not guess
        step, step_note = None, f"provisioner function unavailable: {exc}"

    pairs: dict[str, tuple[Callable[[], object], Callable[[], object] | None]] = {
        "CEL binding, Linear provider": (
            lambda: expression.eval(data=activation).plain_value(),
            lambda: bindings.compile_binding(source, variables=["entities"]).evaluate(activation),
        ),
        "input validation, Linear inputs": (
            # The same instance zonecat's validator sees: the inputs with the schema's defaults applied (here the
            # default scopes), so the ratio is zonecat's overhead, not the library validating more data.
            lambda: input_validator.validate(validated),
            lambda: schemas.validate_instance(input_schema, INPUTS, "inputs"),
        ),
        "entity validation, provider attributes": (
            lambda: provider_validator.validate(attributes),
            lambda: schemas.validate_instance(provider_schema, attributes, "entities.linear"),
        ),
        "entity step (bindings + validation)": (bare_step, step),
    }
    figures: dict[str, Any] = {"seconds_per_figure": seconds}
    checks: list[Check] = []
    for name, (bare, ours) in pairs.items():
        if ours is not None:
            bare_us, ours_us = per_call_us(bare, ours, seconds=seconds)
        else:
            (bare_us,), ours_us = per_call_us(bare, seconds=seconds), None
        ratio = ours_us / bare_us if ours_us is not None else None
        figures[name] = {
            "bare_us": round(bare_us, 2),
            "zonecat_us": None if ours_us is None else round(ours_us, 2),
            "ratio": None if ratio is None else round(ratio, 2),
        }
        note = f"zonecat {ours_us:.1f} µs vs bare {bare_us:.1f} µs" if ours_us is not None else step_note
        checks.append(at_most(f"{name}: zonecat / bare", ratio, "x", MAX_RATIO, f"≤ {MAX_RATIO:g}x", note))
    (eval_only,) = per_call_us(lambda: expression.eval(data=activation), seconds=seconds)
    figures["cel_eval_only_us"] = round(eval_only, 2)
    checks.append(info("bare CEL eval without plain_value()", eval_only, "µs"))
    notes = [f"the entity step is zonecat's {step_note}; bare = eval + plain_value() + validate of its result"]
    return Outcome(figures, checks, notes)

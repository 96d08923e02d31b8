"""Checking initial states and test cases against a graph's state schema."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from wtb_prefect.errors import StateValidationError

__all__ = ["TestCase", "split_test_case", "validate_state"]


@dataclasses.dataclass(frozen=True)
class TestCase:
    """One test case: the graph input, what is expected of it, and its id."""

    __test__ = False  # not a pytest class

    input: dict[str, Any]
    expected: Any = None
    case_id: str = ""


def _schema_fields(schema: type) -> dict[str, Any] | None:
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return {name: f.annotation for name, f in schema.model_fields.items()}
    if dataclasses.is_dataclass(schema):
        hints = typing.get_type_hints(schema, include_extras=True)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(schema)}
    if isinstance(schema, type) and hasattr(schema, "__annotations__"):
        return typing.get_type_hints(schema, include_extras=True)
    return None


def split_test_case(case: Mapping[str, Any], schema: type | None, index: int) -> TestCase:
    """Separate a test case into graph input, ``expected`` and id.

    A test case is the graph input itself (``{"query": ...}``), optionally with
    an ``expected`` entry and a ``case_id`` entry, unless the state schema has
    fields of those names; or the explicit form ``{"input": {...}, "expected":
    ..., "case_id": ...}``.
    """
    if not isinstance(case, Mapping):
        raise StateValidationError(f"test_cases[{index}] must be a dict (the graph input), got {type(case).__name__}")
    fields = _schema_fields(schema) if schema is not None else None
    reserved = {"expected", "case_id"} - set(fields or {})
    if "input" in case and "input" not in (fields or {}) and isinstance(case["input"], Mapping):
        data = dict(case["input"])
        return TestCase(input=data, expected=case.get("expected"), case_id=str(case.get("case_id", index)))
    data = {k: v for k, v in case.items() if k not in reserved}
    return TestCase(
        input=data,
        expected=case.get("expected") if "expected" in reserved else None,
        case_id=str(case.get("case_id", index)) if "case_id" in reserved else str(index),
    )


def validate_state(schema: type | None, state: Mapping[str, Any], where: str = "initial_state") -> None:
    """Check ``state`` against ``schema`` without changing what the graph receives.

    Pydantic schemas validate the whole input (required fields included);
    TypedDict and dataclass schemas check that every key is a field and every
    value has the field's type, since LangGraph accepts partial input for them.

    Raises:
        StateValidationError: names each bad field and says what it expects.
    """
    if schema is None:
        return
    if not isinstance(state, Mapping):
        raise StateValidationError(f"{where} must be a dict of state fields, got {type(state).__name__}")
    fields = _schema_fields(schema)
    if fields is None:
        return
    name = getattr(schema, "__name__", str(schema))
    extra_allowed = (
        isinstance(schema, type) and issubclass(schema, BaseModel) and schema.model_config.get("extra") == "allow"
    )
    unknown = [k for k in state if k not in fields]
    if unknown and not extra_allowed:
        raise StateValidationError(
            f"{where} has key(s) {unknown} that state schema {name} does not define. "
            f"Fields: {sorted(fields)}. Fix: remove or rename them"
        )
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            schema.model_validate(dict(state))
        except ValidationError as exc:
            raise StateValidationError(f"{where} does not validate against {name}: {exc}") from exc
        return
    problems = []
    for key, value in state.items():
        try:
            adapter = TypeAdapter(fields[key])
        except Exception:  # a type pydantic cannot check (arbitrary class): accept
            continue
        try:
            adapter.validate_python(value, strict=False)
        except ValidationError as exc:
            problems.append(f"{key}: {exc.errors()[0]['msg']} (got {value!r})")
    if problems:
        raise StateValidationError(f"{where} does not validate against {name}: " + "; ".join(problems))

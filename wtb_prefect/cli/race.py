"""``wtb batch --race``: the race of a batch from the command line.

``--race`` takes a small spec, ``best`` or ``baseline`` (the goal) and/or
``key=value`` pairs of :class:`~wtb_prefect.config.RaceConfig` fields, comma
separated (``metric`` is short for ``primary_metric``)::

    wtb batch app.py:project --cases cases.json --matrix matrix.json --race metric=answer_hit,alpha=0.05
    wtb batch app.py:project --cases cases.json --matrix matrix.json --race-metric answer_hit --race-epsilon 0.05

``--race-metric``, ``--race-alpha`` and ``--race-epsilon`` set one field each
and race the batch on their own; RaceConfig validates the values before any
work starts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["parse_race_spec", "race_from_options"]

_SHORT = {"metric": "primary_metric", "threshold": "repetition_threshold", "margin": "repetition_margin"}
_FLOATS = {"alpha", "epsilon", "repetition_threshold", "repetition_margin"}
_INTS = {"max_cases", "min_cases", "seed"}


def parse_race_spec(spec: str) -> dict[str, Any]:
    """The RaceConfig fields a ``--race`` spec names.

    Raises:
        ValueError: a part that is neither a goal nor ``key=value``, or a number that does not parse.
    """
    fields: dict[str, Any] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part or part.lower() in ("on", "true", "yes"):
            continue
        if part in ("best", "baseline"):
            fields["goal"] = part
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r} is neither a goal (best, baseline) nor key=value")
        key = _SHORT.get(key.strip(), key.strip())
        value = value.strip()
        try:
            if key in _FLOATS:
                fields[key] = float(value)
            elif key in _INTS:
                fields[key] = None if key == "max_cases" and value.lower() in ("", "none", "all") else int(value)
            else:
                fields[key] = value
        except ValueError:
            raise ValueError(f"{key}={value!r} is not a number") from None
    return fields


def race_from_options(
    spec: str | None, metric: str | None, alpha: float | None, epsilon: float | None
) -> dict[str, Any] | None:
    """The ``race=`` of ``run_batch_test`` from ``--race`` and its single-field options; None: no race."""
    if spec is None and metric is None and alpha is None and epsilon is None:
        return None
    fields = parse_race_spec(spec or "")
    for key, value in (("primary_metric", metric), ("alpha", alpha), ("epsilon", epsilon)):
        if value is not None:
            fields[key] = value
    return fields


def print_race(result: Any) -> None:
    """The race's table (variant, status, dropped after, verdict, node calls) and its cost, when the batch raced."""
    from rich.table import Table

    from wtb_prefect.cli.root import console

    race = result.tracking.get("race") if hasattr(result, "tracking") else None
    if not race:
        return
    table = Table(
        title=f"race on {race['primary_metric']} (goal {race['goal']}, alpha {race['alpha']:g}, "
        f"epsilon {race['epsilon']:g}; {race['kind']} verdicts)"
    )
    for column in ("variant", "status", "dropped after", "verdict", "node calls"):
        table.add_column(column)
    for row in race["verdicts"]:
        after = row.get("dropped_after")
        table.add_row(
            str(row["variant"]),
            str(row["status"]),
            "" if after is None else f"{after} cases",
            str(row["verdict"]),
            str(row.get("node_calls", "")),
        )
    console.print(table)
    cost = race["cost"]
    share = cost["node_calls"] / cost["full_node_calls"] if cost.get("full_node_calls") else 1.0
    console.print(
        f"race cost: {cost['node_calls']} node calls of the full matrix's {cost['full_node_calls']} "
        f"({share:.0%}), {cost['node_seconds']:.1f}s of {cost['full_node_seconds']:.1f}s node time"
        + (f", ${cost['dollars']:.4f} of ${cost['full_dollars']:.4f}" if "dollars" in cost else ""),
        highlight=False,
    )

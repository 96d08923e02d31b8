"""``wtb batch --budget`` and ``--estimate``: what a batch spent and saved, and what it would cost.

::

    wtb batch app.py:project --cases cases.json --matrix matrix.json --estimate
    wtb batch app.py:project --cases cases.json --matrix matrix.json --budget 5
    wtb batch app.py:project --resume <batch id> --budget 20

``--estimate`` prices the planned batch from the project's recorded history
and runs nothing. ``--budget`` stops new node calls once the spend reaches it;
the batch then ends ``budget_exceeded`` and ``--resume`` with a larger budget
finishes it.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from wtb_prefect.cli.root import console

__all__ = ["print_cost", "print_estimate"]


def print_cost(result: Any) -> None:
    """The batch's spend, what sharing and the cache saved, and the budget's outcome (nothing when no model was called)."""
    cost = result.tracking.get("cost") or {}
    if not cost or (not cost.get("spent_usd") and not cost.get("saved_usd") and cost.get("budget_usd") is None):
        return
    line = f"cost: spent ${cost['spent_usd']:.4f}, saved ${cost['saved_usd']:.4f} by reused node calls"
    if cost.get("budget_usd") is not None:
        line += f" (budget ${cost['budget_usd']:.4f})"
    console.print(line, highlight=False)
    if cost.get("unpriced_models"):
        console.print(
            f"[yellow]no price for {', '.join(cost['unpriced_models'])}[/yellow]: their tokens are counted, "
            "not priced (add them to ExecutionConfig.prices)",
            highlight=False,
        )
    if cost.get("outcome") == "budget_exceeded":
        console.print(
            f"[yellow]budget_exceeded[/yellow]: batch {cost['batch_id']} stopped at its budget with "
            f"{cost['finished']} executions finished, {len(cost['stopped'])} paused and {cost['not_started']} not "
            f"started. Finish it with: wtb batch <project> --resume {cost['batch_id']} --budget <larger>",
            highlight=False,
        )


def print_estimate(estimate: Any) -> None:
    """A planned batch's estimated cost per variant and per node, and the nodes without history."""
    table = Table(title=f"estimated cost: ${estimate.total_usd:.4f} for {estimate.executions} executions")
    table.add_column("variant")
    table.add_column("estimated $", justify="right")
    for label, usd in estimate.by_variant.items():
        table.add_row(label, f"{usd:.4f}")
    console.print(table)
    nodes = Table(title="per node")
    for column in ("node", "calls", "reused", "estimated $"):
        nodes.add_column(column, justify="left" if column == "node" else "right")
    for name, row in estimate.by_node.items():
        nodes.add_row(name, f"{row['calls']:.0f}", f"{row['shared']:.0f}", f"{row['usd']:.4f}")
    console.print(nodes)
    console.print(
        f"from {estimate.history_executions} recorded executions; node-call sharing "
        f"{'on' if estimate.sharing else 'off'}",
        highlight=False,
    )
    if estimate.no_history:
        console.print(f"[yellow]no history[/yellow] (priced at $0): {', '.join(estimate.no_history)}", highlight=False)

"""What a batch spends on chat models, against its budget and per-execution limit.

One :class:`SpendLedger` per run of a batch. The dispatcher asks it before
each node call starts (:meth:`SpendLedger.before_call`) and books each node
run's usage into it when the run ends (:meth:`SpendLedger.book`):

* once the batch's spend reaches ``budget_usd``, no new node call starts:
  the call raises :class:`~wtb_prefect.errors.BudgetExceeded` before it is
  submitted, the execution stops resumable at its last checkpoint, and calls
  already in flight finish and are booked;
* once one execution's spend reaches ``max_cost_per_execution``, its next
  node call raises :class:`~wtb_prefect.errors.CostLimitExceeded` (the
  execution fails with that error; the others go on).

Costs come from the project's :class:`~wtb_prefect.pricing.PriceTable`; a
model it does not price is counted in tokens, named once per batch in a
warning, and adds nothing to the spend.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Mapping
from typing import Any

from wtb_prefect.errors import BudgetExceeded, CostLimitExceeded
from wtb_prefect.pricing import PriceTable, UnpricedModelWarning, check_dollars
from wtb_prefect.results import NodeRecord

__all__ = ["SpendLedger", "build_ledger", "cost_tracking", "default_ledger"]

logger = logging.getLogger(__name__)


class SpendLedger:
    """The spend of one run of a batch: booked node runs, the budget, the per-execution limit.

    Args:
        prices: the price table (None: the shipped one).
        budget_usd: no node call starts once the spend reaches this (None: no budget).
        max_cost_per_execution: an execution's node calls stop once its spend reaches this.
    """

    def __init__(
        self,
        prices: PriceTable | None = None,
        *,
        budget_usd: float | None = None,
        max_cost_per_execution: float | None = None,
    ) -> None:
        self.prices = prices if prices is not None else PriceTable.shipped()
        self.budget_usd = budget_usd
        self.max_cost_per_execution = max_cost_per_execution
        self.spent_usd = 0.0
        self.saved_usd = 0.0
        self.by_execution: dict[str, float] = {}
        self.unpriced: set[str] = set()
        self.calls_refused = 0
        """Node calls that did not start because the budget was reached."""
        self.reached_at_usd: float | None = None
        """The spend when the budget was first found reached (None: not reached)."""
        self._lock = threading.Lock()

    @property
    def budget_reached(self) -> bool:
        """Whether the spend has reached the budget (no new node call starts)."""
        return self.budget_usd is not None and self.spent_usd >= self.budget_usd

    def before_call(self, execution_id: str | None, node: str) -> None:
        """Refuse a node call the budget or the execution's limit no longer allows.

        Raises:
            BudgetExceeded: the batch's spend has reached ``budget_usd``.
            CostLimitExceeded: this execution's spend has reached ``max_cost_per_execution``.
        """
        with self._lock:
            if self.budget_reached:
                assert self.budget_usd is not None
                self.calls_refused += 1
                if self.reached_at_usd is None:
                    self.reached_at_usd = self.spent_usd
                raise BudgetExceeded(budget_usd=self.budget_usd, spent_usd=self.spent_usd, node=node)
            limit = self.max_cost_per_execution
            if limit is not None and execution_id is not None:
                spent = self.by_execution.get(execution_id, 0.0)
                if spent >= limit:
                    raise CostLimitExceeded(execution_id=execution_id, limit_usd=limit, spent_usd=spent, node=node)

    def cost(self, usage: Mapping[str, Mapping[str, int]] | None) -> tuple[float, list[str]]:
        """Dollars of ``usage`` and the models it could not price (each named once per ledger)."""
        if not usage:
            return 0.0, []
        priced = self.prices.cost(usage)
        new = []
        with self._lock:
            for model in priced.unpriced:
                if model not in self.unpriced:
                    self.unpriced.add(model)
                    new.append(model)
        for model in new:
            message = (
                f"model {model!r} has no price: its tokens are counted but not in cost_usd "
                "(add it to the project's prices: ExecutionConfig.prices)"
            )
            logger.warning(message)
            warnings.warn(message, UnpricedModelWarning, stacklevel=2)
        return priced.cost_usd, list(priced.unpriced)

    def book(self, execution_id: str | None, record: NodeRecord) -> None:
        """Price ``record``'s usage (spent) and saved usage (reused) in place, and add them up."""
        spent, unpriced = self.cost(record.usage)
        saved, unpriced_saved = self.cost(record.saved_usage)
        record.cost_usd = spent
        record.saved_usd = saved
        record.unpriced_models = sorted(set(unpriced) | set(unpriced_saved)) or None
        with self._lock:
            self.spent_usd += spent
            self.saved_usd += saved
            if execution_id is not None:
                self.by_execution[execution_id] = self.by_execution.get(execution_id, 0.0) + spent

    def summary(self) -> dict[str, Any]:
        """The ledger as plain data (for the batch result's tracking)."""
        return {
            "spent_usd": self.spent_usd,
            "saved_usd": self.saved_usd,
            "budget_usd": self.budget_usd,
            "max_cost_per_execution": self.max_cost_per_execution,
            "budget_reached": self.budget_reached,
            "calls_refused": self.calls_refused,
            "unpriced_models": sorted(self.unpriced),
            "prices_as_of": self.prices.as_of,
        }


_default: SpendLedger | None = None
_default_lock = threading.Lock()


def default_ledger() -> SpendLedger:
    """The ledger of node runs outside a batch's (shipped prices, no budget; one per process)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SpendLedger()
        return _default


def build_ledger(execution: Any, budget_usd: Any = None) -> SpendLedger:
    """The ledger of one run of a batch: ``ExecutionConfig`` prices and limits, ``budget_usd`` overriding its budget.

    Raises:
        ConfigError: a bad budget or price, or an unknown prices file (before any work starts).
    """
    budget = check_dollars(budget_usd, "budget_usd") if budget_usd is not None else execution.budget_usd
    prices = PriceTable.load(execution.prices, field="execution.prices")
    return SpendLedger(prices, budget_usd=budget, max_cost_per_execution=execution.max_cost_per_execution)


def cost_tracking(ledger: SpendLedger, batch_id: str, results: list[Any], planned: int) -> dict[str, Any]:
    """The batch result's ``tracking["cost"]``: the ledger, and ``outcome`` ``budget_exceeded`` when the
    budget stopped executions (``stopped``: paused at a checkpoint; ``not_started``) or ``completed``."""
    stopped = [r.execution_id for r in results if (r.provenance or {}).get("stopped_by") == "budget"]
    not_started = planned - len(results)
    exceeded = ledger.budget_reached and (bool(stopped) or not_started > 0)
    return {
        **ledger.summary(),
        "outcome": "budget_exceeded" if exceeded else "completed",
        "batch_id": batch_id,
        "finished": sum(1 for r in results if r.status in ("completed", "failed")),
        "stopped": stopped,
        "not_started": not_started if exceeded else 0,
    }

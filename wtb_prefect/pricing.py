"""What chat-model tokens cost: per-model prices and the dollar cost of a usage record.

The shipped table (``prices.yaml`` beside this module) holds providers' list
prices in US dollars per million tokens for common OpenAI, Anthropic, Google
and Mistral models, as of the date in its ``as_of`` field
(:attr:`PriceTable.as_of`). List prices change and discounts are not
modelled, so a project can override any of them, or add its own models::

    table = PriceTable.load({"my-finetune": {"input": 0.3, "output": 1.2}})
    table = PriceTable.load("prices.yaml")  # the same shape as the shipped file

Model names are looked up exactly first, then through aliases, then with a
provider prefix (``openai:``, ``models/``, ``anthropic.``) and a date or
version suffix (``-2024-08-06``, ``-20241022``, ``@20241022``, ``-latest``,
``-v2:0``) removed, then by the longest table name the model name starts
with (``gpt-4o-mini-audio`` -> ``gpt-4o-mini``). A model the table does not
know is never priced as zero: its tokens are counted, its cost is left out,
and :meth:`PriceTable.cost` says so (``priced=False``, ``unpriced``) and can
warn once per model with :class:`UnpricedModelWarning`.

Plain data: no Prefect, Ray or MLflow import.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from os import PathLike
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wtb_prefect.errors import ConfigError

__all__ = ["ModelPrice", "PriceTable", "UnpricedModelWarning", "UsageCost", "check_dollars"]

SHIPPED_PRICES = Path(__file__).with_name("prices.yaml")
"""The price table shipped with the package."""

_Dollars = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class UnpricedModelWarning(UserWarning):
    """Tokens of a model the price table does not know were counted but not priced."""


class ModelPrice(BaseModel):
    """US dollars per million tokens of one model.

    Attributes:
        input: per million input (prompt) tokens not read from a cache.
        output: per million output tokens (reasoning tokens included, as providers bill them).
        cached_input: per million input tokens read from the provider's prompt cache
            (None: the model has no cache discount, they cost ``input``).

    Raises:
        ConfigError: a price is negative, not finite or not a number (naming the field).
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    input: _Dollars
    output: _Dollars
    cached_input: _Dollars | None = None

    def __init__(self, _field: str = "price", **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _config_error(_field, exc) from None

    def cost(self, counts: Mapping[str, int]) -> float:
        """Dollars for ``counts`` (``input``, ``output``, ``cache_read`` tokens, as booked per model)."""
        inputs = int(counts.get("input", 0))
        cached = min(int(counts.get("cache_read", 0)), inputs)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (inputs - cached) * self.input + cached * cached_rate + int(counts.get("output", 0)) * self.output
        ) / 1e6


def _config_error(field: str, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    where = f"{field}.{loc}" if loc else field
    value = err.get("input")
    problem = f"{value!r} is not a valid price ({err['msg']})" if "input" in err else err["msg"]
    if err["type"] == "missing":
        problem = "is required"
    elif err["type"] == "extra_forbidden":
        problem = "is not a price field"
    return ConfigError(
        where,
        problem,
        "give US dollars per million tokens as a number >= 0, with fields input, output and optionally cached_input",
    )


@dataclass(frozen=True)
class UsageCost:
    """The dollar cost of a usage record (``{model: {kind: count}}``).

    Attributes:
        cost_usd: dollars of the models the table prices (models it does not know add nothing).
        by_model: dollars per model; None for a model the table does not price.
        unpriced: the models the table does not price (their tokens were counted, not priced).
    """

    cost_usd: float
    by_model: dict[str, float | None] = field(default_factory=dict)
    unpriced: tuple[str, ...] = ()

    @property
    def priced(self) -> bool:
        """Whether every model of the record was priced."""
        return not self.unpriced


_PREFIX = re.compile(r"^(?:[a-z0-9_-]+:(?!\d)|.*/|(?:anthropic|openai|google|mistral|mistralai|meta|amazon)\.)")
_SUFFIXES = [
    re.compile(r"-v\d+(?::\d+)?$"),  # Bedrock version: -v2:0
    re.compile(r"@\d{8}$"),  # Vertex: @20241022
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # OpenAI: -2024-08-06
    re.compile(r"-\d{8}$"),  # Anthropic: -20241022
    re.compile(r"-\d{4}$"),  # Mistral: -2411
    re.compile(r"-latest$"),
]


class PriceTable:
    """Per-model prices (a read-only mapping of model name -> :class:`ModelPrice`), with lookup rules.

    Build one with :meth:`shipped`, :meth:`from_file` or :meth:`load`, which
    lays a project's overrides over the shipped table.
    """

    def __init__(
        self,
        prices: Mapping[str, ModelPrice | Mapping[str, Any]],
        aliases: Mapping[str, str] | None = None,
        *,
        as_of: str | None = None,
        source: str = "prices",
    ) -> None:
        if not isinstance(prices, Mapping):
            raise ConfigError(source, f"expected a mapping of model name to prices, got {type(prices).__name__}",
                              "give {model: {input: ..., output: ..., cached_input: ...}}")  # fmt: skip
        table: dict[str, ModelPrice] = {}
        for name, price in prices.items():
            where = f"{source}[{name!r}]"
            if isinstance(price, ModelPrice):
                table[str(name).lower()] = price
            elif isinstance(price, Mapping):
                table[str(name).lower()] = ModelPrice(where, **price)
            else:
                raise ConfigError(
                    where, f"{price!r} is not a price", "give {input: ..., output: ..., cached_input: ...}"
                )
        self._prices = table
        self._aliases = {str(k).lower(): str(v).lower() for k, v in (aliases or {}).items()}
        for alias, target in self._aliases.items():
            if target not in self._prices:
                raise ConfigError(f"{source}.aliases[{alias!r}]", f"names {target!r}, which has no price",
                                  "point the alias at a model of the table")  # fmt: skip
        self.as_of = as_of
        self.source = source

    # ─── building ───

    @classmethod
    def shipped(cls) -> PriceTable:
        """The table shipped with the package (list prices as of :attr:`as_of`)."""
        return _shipped()

    @classmethod
    def from_file(cls, path: str | PathLike[str], *, field: str = "prices") -> PriceTable:
        """A table from a YAML or JSON file (``prices:``, optional ``aliases:`` and ``as_of:``, or a bare mapping).

        Raises:
            ConfigError: the file does not exist, does not parse or holds a bad price (naming ``field``).
        """
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(field, f"price file {str(p)!r} does not exist",
                              "give the path of a YAML or JSON file of prices (see wtb_prefect/prices.yaml)")  # fmt: skip
        try:
            text = p.read_text()
            data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ConfigError(field, f"price file {str(p)!r} does not parse ({exc})",
                              "write it as YAML or JSON like wtb_prefect/prices.yaml") from None  # fmt: skip
        return cls._from_data(data or {}, source=f"{field}({p.name})")

    @classmethod
    def _from_data(cls, data: Any, *, source: str) -> PriceTable:
        if isinstance(data, Mapping) and "prices" in data:
            extra = set(data) - {"prices", "aliases", "as_of"}
            if extra:
                raise ConfigError(f"{source}.{sorted(extra)[0]}", "is not a field of a price table",
                                  "use prices, aliases and as_of")  # fmt: skip
            return cls(data["prices"] or {}, data.get("aliases") or {}, as_of=data.get("as_of"), source=source)
        return cls(data, source=source)

    @classmethod
    def load(
        cls, value: PriceTable | Mapping[str, Any] | str | PathLike[str] | None, *, field: str = "prices"
    ) -> PriceTable:
        """The table a project's ``prices`` setting means: the shipped table with its overrides laid over it.

        ``value`` is None (the shipped table), a :class:`PriceTable` (used as it
        is), a mapping (model -> prices, or ``{prices:, aliases:}``) or the path
        of a YAML/JSON file. Validated here, before any work starts.

        Raises:
            ConfigError: a bad price, an unknown file, or a value of another type (naming ``field``).
        """
        if value is None:
            return cls.shipped()
        if isinstance(value, PriceTable):
            return value
        if isinstance(value, Mapping):
            return cls.shipped().overridden_by(cls._from_data(value, source=field))
        if isinstance(value, (str, PathLike)):
            return cls.shipped().overridden_by(cls.from_file(value, field=field))
        raise ConfigError(field, f"{value!r} is not a price table",
                          "give a mapping {model: {input:, output:, cached_input:}} or the path of a prices file")  # fmt: skip

    def overridden_by(self, other: PriceTable) -> PriceTable:
        """This table with ``other``'s prices and aliases laid over it."""
        table = PriceTable({}, source=other.source, as_of=other.as_of or self.as_of)
        table._prices = {**self._prices, **other._prices}
        table._aliases = {**self._aliases, **other._aliases}
        for name in other._prices:  # an overridden model is priced as given, not through an older alias
            table._aliases.pop(name, None)
        return table

    # ─── lookup ───

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.resolve(model) is not None

    def __len__(self) -> int:
        return len(self._prices)

    def models(self) -> list[str]:
        """The model names the table prices."""
        return sorted(self._prices)

    def resolve(self, model: str) -> str | None:
        """The table's name for ``model`` (exact, alias, without prefix/date, longest prefix), or None."""
        return _resolve(self._prices, self._aliases, model)

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model`` by the lookup rules, or None when the table does not know it."""
        name = self.resolve(model)
        return None if name is None else self._prices[name]

    def cost(self, usage: Mapping[str, Mapping[str, int]], *, warned: set[str] | None = None) -> UsageCost:
        """The dollar cost of ``usage`` (``{model: {"input", "output", "cache_read", ...}}``).

        Models the table does not know are left out of ``cost_usd`` and listed
        in ``unpriced``. With ``warned`` (a set the caller keeps, e.g. one per
        batch), each such model not yet in it is named in an
        :class:`UnpricedModelWarning` and added to it.
        """
        by_model: dict[str, float | None] = {}
        unpriced: list[str] = []
        for model, counts in usage.items():
            price = self.price(model)
            if price is None:
                by_model[model] = None
                unpriced.append(model)
            else:
                by_model[model] = price.cost(counts)
        if warned is not None:
            for model in unpriced:
                if model not in warned:
                    warned.add(model)
                    warnings.warn(
                        f"model {model!r} has no price: its tokens are counted but not in cost_usd "
                        "(add it to the project's prices)",
                        UnpricedModelWarning,
                        stacklevel=2,
                    )
        total = math.fsum(v for v in by_model.values() if v is not None)
        return UsageCost(cost_usd=total, by_model=by_model, unpriced=tuple(unpriced))

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models, as_of={self.as_of!r}, source={self.source!r})"


def _resolve(prices: Mapping[str, ModelPrice], aliases: Mapping[str, str], model: str) -> str | None:
    name = str(model).strip().lower()
    for candidate in _candidates(name):
        if candidate in prices:
            return candidate
        if candidate in aliases:
            return aliases[candidate]
    base = _strip(name)
    best = None
    for key in prices:
        if base.startswith(key + "-") and (best is None or len(key) > len(best)):
            best = key
    return best


def _strip(name: str) -> str:
    name = _PREFIX.sub("", name)
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            stripped = suffix.sub("", name)
            if stripped != name and stripped:
                name, changed = stripped, True
    return name


def _candidates(name: str) -> list[str]:
    without_prefix = _PREFIX.sub("", name)
    return [name, without_prefix, _strip(name)]


@cache
def _shipped() -> PriceTable:
    data = yaml.safe_load(SHIPPED_PRICES.read_text())
    return PriceTable._from_data(data, source="shipped prices")


def check_dollars(value: Any, field: str) -> float | None:
    """``value`` as an amount of dollars (None stays None).

    Raises:
        ConfigError: a negative, non-finite or non-numeric amount (naming ``field``).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            number = float(value) if isinstance(value, str) else math.nan
        except ValueError:
            number = math.nan
        if math.isnan(number):
            raise ConfigError(field, f"{value!r} is not an amount of dollars", "give a number >= 0, e.g. 5 or 0.25")
        value = number
    if not math.isfinite(value) or value < 0:
        raise ConfigError(field, f"{value!r} is not an amount of dollars", "give a finite number >= 0, e.g. 5 or 0.25")
    return float(value)

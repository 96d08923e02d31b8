"""Configuration objects: file tracking, environments, execution, Ray and node resources.

Every class and field keeps the name and default of the user-facing API; values
are validated on construction and bad ones raise :class:`pydantic.ValidationError`
whose message names the field and the fix.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "EnvSpec",
    "EnvironmentConfig",
    "ExecutionConfig",
    "FileTrackingConfig",
    "NodeResourceConfig",
    "RaceConfig",
    "RateLimitConfig",
    "RayConfig",
    "parse_memory",
]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: str | int | float) -> int:
    """Parse a memory size ("512MB", "2GB", "1.5GiB", 1073741824) into bytes.

    Decimal units (KB, MB, GB, TB) are powers of 1000 and binary units (KiB,
    MiB, GiB, TiB) powers of 1024, as in Ray and Kubernetes.

    Raises:
        ValueError: the value is negative, empty or has an unknown unit.
    """
    if isinstance(value, bool):
        raise ValueError(f"memory must be a size such as '512MB' or '2GiB', not {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"memory must not be negative, got {value!r}")
        return int(value)
    match = _MEMORY.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"cannot parse memory {value!r}: write a number with a unit such as "
            "'512MB', '2GB', '1.5GiB', or a plain number of bytes"
        )
    return int(float(match.group(1)) * _UNITS[unit])


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FileTrackingConfig(_Config):
    """FileTracker (DVC) integration configuration."""

    enabled: bool = False
    tracked_paths: list[str] = Field(default_factory=list)
    ignore_patterns: list[str] = Field(default_factory=lambda: ["*.pyc", "__pycache__/", "*.log", ".git/", "*.tmp"])
    auto_commit: bool = True
    commit_on: Literal["checkpoint", "node_complete", "manual"] = "checkpoint"
    repository_path: str | None = None
    snapshot_strategy: Literal["full", "incremental"] = "incremental"
    max_snapshots: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _paths_when_enabled(self) -> FileTrackingConfig:
        if self.enabled and not self.tracked_paths:
            raise ValueError(
                "file tracking is enabled but tracked_paths is empty: "
                "list the folders to snapshot, e.g. tracked_paths=['./outputs/']"
            )
        return self


class EnvSpec(_Config):
    """A Python environment: interpreter version, dependencies and variables.

    ``python_version`` defaults to None, meaning the running interpreter's
    version (the Ray cluster can only run workers of its own Python).
    """

    python_version: str | None = None
    dependencies: list[str] = Field(default_factory=list)
    requirements_file: str | None = None
    env_vars: dict[str, str] = Field(default_factory=dict)

    @field_validator("python_version")
    @classmethod
    def _version_shape(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"3\.\d+(\.\d+)?", value):
            raise ValueError(f"python_version must look like '3.11' or '3.11.7', not {value!r}")
        return value


class EnvironmentConfig(_Config):
    """uv environment management at workflow, node or variant granularity."""

    granularity: Literal["workflow", "node", "variant"] = "workflow"
    use_current_env: bool = False
    default_env: EnvSpec | None = None
    node_environments: dict[str, EnvSpec] = Field(default_factory=dict)
    variant_environments: dict[str, EnvSpec] = Field(default_factory=dict)
    reuse_existing: bool = True
    cleanup_on_exit: bool = False
    uv_manager_url: str | None = None

    @field_validator("variant_environments")
    @classmethod
    def _variant_keys(cls, value: dict[str, EnvSpec]) -> dict[str, EnvSpec]:
        for key in value:
            node, sep, variant = key.partition(":")
            if not sep or not node or not variant:
                raise ValueError(f"variant_environments key {key!r} must be 'node:variant' or '_workflow:variant'")
        return value


class NodeResourceConfig(_Config):
    """Ray resources of one node: CPUs, GPUs, memory and custom resources.

    Where the node runs (see ``wtb_prefect.run.lanes``): an ``async def`` node,
    or a sync node with ``io_bound=True`` (it waits on a network, e.g. an LLM
    API, rather than computing), runs in a long-lived Ray actor of an I/O lane
    that holds up to ``calls_per_worker`` calls at once. Such an actor reserves
    this request (CPUs, GPUs, memory, custom resources) once, for itself, and
    its calls share it: the request sizes and places the actor, not each call.
    Any other node is CPU-bound: each call is a Ray task holding this request.

    ``max_in_flight`` and ``max_calls_per_second`` limit this node (or this
    variant of it, when set on the variant's resources) across all executions
    running in the batch, as LLM APIs enforce both.
    """

    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory: str = "1GB"
    custom_resources: dict[str, float] = Field(default_factory=dict)
    io_bound: bool | None = None
    """True: a sync body that mostly waits (network, API calls) runs on an I/O lane's threads; False: one
    Ray task per call. None: the bench finds out from the node's first calls (``docs/lanes.md``)."""
    calls_per_worker: int = Field(default=32, ge=1, le=1000)
    """The most calls of an I/O lane one actor runs at once; the pool has ceil(concurrency / this) actors."""
    max_in_flight: int | None = Field(default=None, ge=1)
    """The most calls of this node running at once in the batch (None: no limit)."""
    max_calls_per_second: float | None = Field(default=None, gt=0)
    """The most calls of this node started per second in the batch (None: no limit)."""
    rate_limit: str | None = None
    """The name of a limit group of ``ExecutionConfig.rate_limits`` this node's calls count against
    (one API key or model shared by every node and variant naming it)."""

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_parses(cls, value: Any) -> str:
        parse_memory(value)
        return str(value)

    @field_validator("num_cpus", "num_gpus")
    @classmethod
    def _ray_quantity(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"Ray accepts fractions only below 1: use a whole number above 1, got {value}")
        return value

    @field_validator("custom_resources")
    @classmethod
    def _custom_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if name in {"CPU", "GPU", "memory", "object_store_memory"}:
                raise ValueError(f"custom_resources must not name {name!r}: use num_cpus, num_gpus or memory")
            if amount < 0:
                raise ValueError(f"custom_resources[{name!r}] must not be negative")
        return value

    @property
    def memory_bytes(self) -> int:
        """The memory request in bytes."""
        return parse_memory(self.memory)

    def ray_options(self) -> dict[str, Any]:
        """The keyword arguments of ``ray.remote`` that request these resources."""
        options: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
        }
        if self.memory_bytes:
            options["memory"] = self.memory_bytes
        if self.custom_resources:
            options["resources"] = dict(self.custom_resources)
        return options


class RateLimitConfig(_Config):
    """The limits of one API (a key, a model) that every node naming it shares.

    Nodes name the group in ``NodeResourceConfig.rate_limit``; the group holds
    across every node and variant of a batch and across batches running at
    once on one machine. Counted per node call (one call = one request, or the
    number of chat-model calls the call made, when known) and booked tokens.
    A rate-limit answer from the provider (HTTP 429) slows the group down and
    the call is retried without spending the node's retries or timeout; the
    group speeds up again as calls succeed. Bad values raise
    :class:`~wtb_prefect.errors.ConfigError` naming the field.
    """

    max_in_flight: int | None = Field(default=None, ge=1)
    """The most calls of the group running at once (None: no limit)."""
    requests_per_minute: float | None = Field(default=None, gt=0)
    """The most calls the group starts within ``window_s`` seconds (None: no limit)."""
    tokens_per_minute: int | None = Field(default=None, gt=0)
    """No call of the group starts while the calls of the last ``window_s`` seconds booked this many tokens."""
    window_s: float = Field(default=60.0, gt=0)
    """The window the per-minute limits count over: a minute, as providers count them (shorter for a quick test)."""

    def __init__(self, **data: Any) -> None:
        from pydantic import ValidationError

        from wtb_prefect.errors import ConfigError

        try:
            super().__init__(**data)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = ".".join(str(part) for part in error["loc"]) or "rate_limits"
            raise ConfigError(
                f"rate_limits.{name}",
                f"is {error.get('input')!r} ({error['msg']})",
                "give a positive number, or None for no limit of that kind",
            ) from None


class RayConfig(_Config):
    """Ray cluster connection and workflow-level concurrency.

    ``max_concurrent_workflows``: a batch's default ``parallelism``, the number
    of executions *computing* at once. With node-call sharing, an execution
    that waits for an identical node call another execution is computing does
    not count meanwhile (it gives its slot to the next execution and takes one
    back before it goes on), so more executions may be alive, waiting.

    ``address``: "auto" joins a running cluster if there is one and otherwise
    starts a local one; "local" always starts a local one; "ray://host:port"
    or "host:port" joins that cluster.

    Retries: ``max_retries`` is the number of further attempts a node gets
    after a failed one, whatever the cause: an exception raised in the node,
    its timeout, or the Ray worker running it dying. Prefect's task engine
    makes every attempt (each is visible on the node's task run, ``retry_delay``
    seconds apart); Ray itself retries nothing (its ``max_retries`` is 0), so
    a node runs at most ``max_retries + 1`` times.

    ``runtime_env``: a Ray runtime env for the job's workers, merged with
    wtb_prefect's own (its ``env_vars`` added to and winning over ours, its
    ``py_modules`` and ``excludes`` added; any other field it sets is its own),
    not replacing it. See docs/cluster.md.
    """

    address: str = "auto"
    max_concurrent_workflows: int = Field(default=10, ge=1)
    object_store_memory: int | None = Field(default=None, ge=78643200)
    max_retries: int = Field(default=3, ge=0)
    retry_delay: float = Field(default=1.0, ge=0)
    runtime_env: dict[str, Any] | None = None


class ExecutionConfig(_Config):
    """How executions run: executor, Ray, per-node resources, checkpoints, timeouts.

    ``checkpoint_storage="postgres"`` needs ``checkpoint_url`` (a PostgreSQL
    connection string); "sqlite" writes to the project's state folder unless
    ``checkpoint_url`` names a file.
    """

    batch_executor: Literal["ray", "threadpool", "sequential"] = "ray"
    ray_config: RayConfig = Field(default_factory=RayConfig)
    node_resources: dict[str, NodeResourceConfig] = Field(default_factory=dict)
    default_node_resources: NodeResourceConfig = Field(default_factory=NodeResourceConfig)
    checkpoint_strategy: Literal["per_node", "per_step", "manual"] = "per_node"
    checkpoint_storage: Literal["memory", "sqlite", "postgres"] = "sqlite"
    checkpoint_url: str | None = None
    default_timeout: int = Field(default=300, gt=0)
    queue_timeout: float = Field(default=1800.0, gt=0)
    """The longest a node call may wait to start (for a free worker, an actor's start, resources, a
    rate limit) before it fails with ``NodeQueueTimeoutError``; ``default_timeout`` and
    ``node_timeouts`` count only the body's own run time."""
    node_timeouts: dict[str, float] = Field(default_factory=dict)
    recursion_limit: int = Field(default=25, ge=1)
    node_cache: Literal["off", "batch", "persistent"] = "batch"
    """Node-call sharing (:mod:`wtb_prefect.run.node_cache`): "batch" runs each distinct node call of a
    batch once; "persistent" also reuses values across batches; "off" runs every call. An execution
    waiting for an identical call in flight does not count against the batch's ``parallelism``."""
    node_cache_storage: str | None = None
    """A Prefect storage block ('local-file-system/name') for persistent values; default the state folder."""
    node_cache_exclude: list[str] = Field(default_factory=list)
    """'node' or 'node:variant' entries that are never shared nor cached."""
    cache_versions: dict[str, str] = Field(default_factory=dict)
    """'node' or 'node:variant' -> a version string that is part of the call's key; change it to force a miss."""
    repetitions: int = Field(default=1, ge=1, strict=True)
    """Independent samples per (variant, case) of a batch when ``run_batch_test`` gives none."""
    rate_limits: dict[str, RateLimitConfig] = Field(default_factory=dict)
    """Limit groups by name (e.g. ``{"openai": {"max_in_flight": 64, "requests_per_minute": 500}}``),
    shared by the nodes whose resources name them in ``rate_limit``."""

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rate_limit_groups(cls, value: Any) -> Any:
        # Built here so that a bad limit raises RateLimitConfig's ConfigError naming the group.
        from wtb_prefect.errors import ConfigError

        if not isinstance(value, dict):
            return value
        groups = {}
        for name, group in value.items():
            try:
                groups[name] = RateLimitConfig(**group) if isinstance(group, dict) else group
            except ConfigError as exc:
                field = exc.field.replace("rate_limits.", f"rate_limits[{name!r}].", 1)
                raise ConfigError(field, exc.problem, exc.fix) from None
        return groups

    def __init__(self, **data: Any) -> None:
        from pydantic import ValidationError

        from wtb_prefect.errors import ConfigError

        try:
            super().__init__(**data)
        except ValidationError as exc:
            for error in exc.errors():  # a bad limit group is a ConfigError, as the group's own would be
                cause = (error.get("ctx") or {}).get("error")
                if isinstance(cause, ConfigError) and error["loc"][:1] in _CONFIG_ERROR_FIELDS:
                    raise cause from None
            raise

    race: RaceConfig | None = None
    """The race of a batch when ``run_batch_test`` gives none (YAML: the ``race:`` section); None runs the full matrix."""

    prices: dict[str, dict[str, float]] | str | None = None
    """Prices of chat models in US dollars per million tokens, laid over the shipped table
    (:mod:`wtb_prefect.pricing`): ``{model: {input:, output:, cached_input:}}`` or the path of a
    YAML/JSON prices file."""
    budget_usd: float | None = None
    """What one run of a batch may spend on model calls; once reached no new node call starts
    (``run_batch_test(budget_usd=...)``, CLI ``--budget`` override it). None: no budget."""
    max_cost_per_execution: float | None = None
    """What one execution may spend; once reached it stops with ``CostLimitExceeded``. None: no limit."""

    @field_validator("budget_usd", "max_cost_per_execution", mode="before")
    @classmethod
    def _dollars(cls, value: Any, info: Any) -> Any:
        from wtb_prefect.pricing import check_dollars

        return check_dollars(value, f"execution.{info.field_name}")

    @field_validator("prices", mode="before")
    @classmethod
    def _price_table(cls, value: Any) -> Any:
        # a bad price or an unknown prices file fails here, naming the model and field
        from wtb_prefect.pricing import PriceTable

        if value is not None and not isinstance(value, str):
            PriceTable.load(value, field="execution.prices")
        return value

    @model_validator(mode="after")
    def _postgres_needs_url(self) -> ExecutionConfig:
        if self.checkpoint_storage == "postgres" and not self.checkpoint_url:
            raise ValueError(
                "checkpoint_storage='postgres' needs checkpoint_url, e.g. 'postgresql://user@127.0.0.1:5432/db'"
            )
        return self


_CONFIG_ERROR_FIELDS = {("rate_limits",), ("prices",), ("budget_usd",), ("max_cost_per_execution",)}
"""ExecutionConfig fields whose validators raise ConfigError: raised as it is, not wrapped by pydantic."""


class RaceConfig(_Config):
    """Racing the variants of a batch (``run_batch_test(race=...)``, YAML ``race:``, CLI ``--race``).

    Cases run round by round in an order seeded by ``seed``, every surviving
    variant on the same case; after each round the variants the evidence has
    decided stop (anytime-valid tests, :mod:`wtb_prefect.analysis.racing`).
    ``goal="best"`` looks for the best variant on ``primary_metric`` within
    ``epsilon``; ``goal="baseline"`` decides every variant against the
    baseline. ``alpha`` bounds the chance that any verdict of the race is
    wrong. ``max_cases`` caps the cases (None: all of them); no variant stops
    before ``min_cases``.

    Sequential repetitions: with ``repetition_threshold`` set, the batch's
    ``repetitions`` is a maximum and each (variant, case) cell stops repeating
    once its pass rate is decided against the threshold (``flaky`` when still
    undecided at the maximum). Bad values raise
    :class:`~wtb_prefect.errors.ConfigError` naming the field and the fix.
    """

    goal: Literal["best", "baseline"] = "best"
    primary_metric: str = Field(default="success", min_length=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    epsilon: float = Field(default=0.02, ge=0)
    max_cases: int | None = Field(default=None, ge=1)
    seed: int = 0
    min_cases: int = Field(default=10, ge=1)
    baseline: str | None = None
    """The baseline's variant label (None: the matrix's first combination)."""
    repetition_threshold: float | None = Field(default=None, gt=0, lt=1)
    repetition_margin: float = Field(default=0.0, ge=0)
    """Half-width of the indifference zone around ``repetition_threshold``."""

    def __init__(self, **data: Any) -> None:
        from pydantic import ValidationError

        from wtb_prefect.errors import ConfigError

        try:
            super().__init__(**data)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = ".".join(str(part) for part in error["loc"]) or "race"
            raise ConfigError(
                f"race.{name}", f"is {error.get('input')!r} ({error['msg']})", _RACE_FIXES.get(name, "see RaceConfig")
            ) from None


ExecutionConfig.model_rebuild()  # its ``race`` field names RaceConfig, defined after it


_RACE_FIXES = {
    "goal": "use 'best' or 'baseline'",
    "alpha": "give a level strictly between 0 and 1, e.g. 0.05",
    "epsilon": "give 0 or a positive indifference zone in the metric's unit, e.g. 0.02",
    "max_cases": "give a positive number of cases, or None for all",
    "min_cases": "give at least 1",
    "primary_metric": "name a metric of the project: success, run_s or an evaluator",
    "repetition_threshold": "give a pass rate strictly between 0 and 1, e.g. 0.8, or None",
    "repetition_margin": "give 0 or a small positive margin",
    "seed": "give a whole number",
    "baseline": "give a variant label or None",
}

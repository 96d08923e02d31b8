"""The node cache: each distinct node call runs once, shared within a batch and cached across batches.

The modules: :mod:`.keys` (what identifies a call), :mod:`.flight` (single
flight of identical calls in this process), :mod:`.store` (where values are
kept), :mod:`.locks` (one process computes a persistent call, the others
wait), :mod:`.sharing` (the node cache of one batch, and the dispatcher's hook
:func:`begin_call`), :mod:`.inventory` (``wtb cache info | clear``).

A *node call* is identified by (:meth:`NodeSharing.call_key`):

* the implementation: its qualified name, its source hash, and the project
  version in which that node's implementation last changed (``update_node`` of
  one node leaves the other nodes' keys alone);
* the node's input as LangGraph hands it over, serialized canonically (dict
  keys sorted, sets ordered) with the checkpointer's serde;
* the injected config / runtime context that reaches the body, without
  LangGraph's per-execution bookkeeping (``thread_id``, checkpoint ids and
  namespaces): a node whose output depends on those must opt out;
* the lock hash of the node's environment, and whether the execution tracks files;
* the repetition index (repetition r shares only with repetition r);
* a ``cache_version`` string (``ExecutionConfig.cache_versions``, by ``node`` or
  ``node:variant``) that a user changes to force a miss.

Resources and the variant's name are not part of it.

The machinery is Prefect's where it holds. Every node is still a Prefect task
run; a shared call runs with a :class:`~prefect.cache_policies.CachePolicy`
returning the key, Prefect's transaction (commit hooks record the computing
task run) and Prefect result storage (cloudpickle) for the value. A reused call
ends in Prefect's ``Cached`` state and its task run name ends with ``reused
from <task run id>``. Single-flight is a small in-process flight map:
concurrent identical calls wait for the first one before they start their task
run (so the name is known, and the run is a certain hit). While it waits, the
waiting execution gives its execution slot to another execution of the batch
(:mod:`wtb_prefect.run.slots`): waiting is not computing, so sharing saves wall
time, not only node bodies. Across processes (two
batches at once on one persistent cache, on one machine and one ``WTB_HOME``)
the first process to start a call holds a lock file on its key under
``$WTB_HOME/node_cache.locks/`` while it computes; the other waits (its slot
serving other executions meanwhile, at most as long as the call can take) and
then reuses the stored value. The
operating system releases the lock of a process that dies, so a killed batch
never leaves a call locked. Processes on different machines sharing a storage
block may still compute an identical call twice.

``ExecutionConfig.node_cache``: ``"batch"`` (default) shares within a batch,
values in memory for the batch only; ``"persistent"`` also keeps them under
``$WTB_HOME/node_cache/<project>/`` (or in the Prefect storage block
``node_cache_storage``) for later batches; ``"off"`` shares nothing.
``node_cache_exclude`` lists ``node`` or ``node:variant`` entries that are never
shared nor cached.

Nodes of executions that track files: a call that changed its execution's
tracked files (the workspace differs after the body) is never reused, because
a hit would not write those files; a call that changed none is reused like any
other.
"""

from wtb_prefect.run.node_cache.flight import CallOrigin
from wtb_prefect.run.node_cache.inventory import cache_info, clear_cache
from wtb_prefect.run.node_cache.keys import NodeCallKey
from wtb_prefect.run.node_cache.locks import cache_locks_dir, lock_call_across_processes
from wtb_prefect.run.node_cache.sharing import NodeCall, NodeSharing, UncacheableOutputError, begin_call, build_sharing
from wtb_prefect.run.node_cache.store import cache_dir, load_storage_block

__all__ = [
    "CallOrigin",
    "NodeCall",
    "NodeCallKey",
    "NodeSharing",
    "UncacheableOutputError",
    "begin_call",
    "build_sharing",
    "cache_dir",
    "cache_info",
    "cache_locks_dir",
    "clear_cache",
    "load_storage_block",
    "lock_call_across_processes",
]

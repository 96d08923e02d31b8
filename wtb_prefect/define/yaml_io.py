"""WorkflowProject from and to a YAML file.

The file names every part of a project by module and attribute::

    name: rag_pipeline
    workflow: {module: myapp.workflows, factory: create_rag_graph, state_schema: myapp.schemas.RAGState}
    variants:
      nodes:
        retriever:
          - {name: bm25_retriever, module: myapp.retrievers, function: bm25_retriever}
      workflows:
        - {name: rag_with_reranker, module: myapp.workflows, factory: create_rag_with_reranker}
    evaluators:
      - {name: answer_hit, module: myapp.scoring, function: answer_hit}
    file_tracking: {enabled: true, paths: [./data/]}
    environment: {granularity: node, default: {python: "3.11", dependencies: [...]}}
    execution: {batch_executor: ray, ray: {address: auto}, node_resources: {retriever: {num_cpus: 2}}}
    race: {primary_metric: answer_hit, alpha: 0.05, epsilon: 0.02}

The spec's short keys (``paths``, ``default``, ``python``, ``ray``) and the
config classes' own field names (``tracked_paths``, ``default_env``,
``python_version``, ``ray_config``) are both accepted. Every error names the
file, the key and its line. ``race:`` (:class:`~wtb_prefect.config.RaceConfig`) is the
project's default race of a batch, ``ExecutionConfig.race``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from wtb_prefect.config import (
    EnvironmentConfig,
    EnvSpec,
    ExecutionConfig,
    FileTrackingConfig,
    NodeResourceConfig,
    RaceConfig,
)
from wtb_prefect.define.imports import ReferenceImportError, import_attribute, on_sys_path
from wtb_prefect.errors import ProjectError

__all__ = ["ProjectFileError", "load_project", "dump_project"]

Path_ = tuple[str | int, ...]


class ProjectFileError(ProjectError, ValueError):
    """A project YAML file is unusable; names the file, the key, the line and the fix."""

    def __init__(self, file: str | Path, key: str, line: int | None, problem: str, fix: str) -> None:
        self.file = str(file)
        self.key = key
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.file}, line {line}" if line else self.file
        super().__init__(f"{where}, key '{key}': {problem}. Fix: {fix}")


# ─── The file's schema ───


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowSpec(_Spec):
    """``workflow:`` the graph factory and its state schema."""

    module: str
    factory: str
    state_schema: str | None = Field(default=None, description="'package.module.Class' or 'package.module:Class'")


class NodeVariantSpec(_Spec):
    """One entry of ``variants.nodes.<node>``."""

    name: str
    module: str
    function: str
    description: str = ""
    environment: EnvSpec | None = None
    resources: NodeResourceConfig | None = None


class WorkflowVariantSpec(_Spec):
    """One entry of ``variants.workflows``."""

    name: str
    module: str
    factory: str
    description: str = ""
    state_schema: str | None = None


class VariantsSpec(_Spec):
    """``variants:`` node variants by node, and workflow variants."""

    nodes: dict[str, list[NodeVariantSpec]] = Field(default_factory=dict)
    workflows: list[WorkflowVariantSpec] = Field(default_factory=list)


class EvaluatorSpec(_Spec):
    """One entry of ``evaluators``: ``fn(final_state, test_case) -> float | dict``."""

    name: str
    module: str
    function: str


class ProjectFile(_Spec):
    """The whole project file."""

    name: str
    description: str = ""
    root: str | None = Field(default=None, description="Project root, relative to the file; default its folder.")
    workflow: WorkflowSpec
    variants: VariantsSpec = Field(default_factory=VariantsSpec)
    evaluators: list[EvaluatorSpec] = Field(default_factory=list)
    file_tracking: FileTrackingConfig | None = None
    environment: EnvironmentConfig | None = None
    execution: ExecutionConfig | None = None
    race: RaceConfig | None = Field(default=None, description="The default race of a batch (ExecutionConfig.race).")


# The spec's short keys -> the config classes' field names.
_SECTION_ALIASES: dict[Path_, dict[str, str]] = {
    ("file_tracking",): {"paths": "tracked_paths"},
    ("environment",): {"default": "default_env"},
    ("execution",): {"ray": "ray_config"},
}
_ENV_ALIASES = {"python": "python_version"}


def _aliases(path: Path_) -> dict[str, str]:
    if path in _SECTION_ALIASES:
        return _SECTION_ALIASES[path]
    is_env = (
        path == ("environment", "default_env")
        or (
            len(path) == 3
            and path[:2] in {("environment", "node_environments"), ("environment", "variant_environments")}
        )
        or (len(path) == 5 and path[:2] == ("variants", "nodes") and path[4] == "environment")
    )
    return _ENV_ALIASES if is_env else {}


# ─── YAML with line numbers ───


class _Located:
    """The YAML document as plain data, plus the line and written key of every path."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.written: dict[Path_, str] = {}
        self._scalars = SafeConstructor()

    def build(self, node: Node, path: Path_ = ()) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            aliases = _aliases(path)
            data: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise ProjectFileError(
                        self.file,
                        self.display(path),
                        key_node.start_mark.line + 1,
                        "a mapping key must be a plain name",
                        "write 'key: value'",
                    )
                written = str(self._scalars.construct_object(key_node))
                key = aliases.get(written, written)
                child = (*path, key)
                if key in data:
                    raise ProjectFileError(
                        self.file,
                        self.display(child, written),
                        key_node.start_mark.line + 1,
                        f"repeats the key (first at line {self.lines[child]})"
                        + (f", here as its other name {written!r}" if written != key else ""),
                        "keep one of them",
                    )
                self.lines[child] = key_node.start_mark.line + 1
                self.written[child] = written
                data[key] = self.build(value_node, child)
            return data
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalars.construct_object(node)

    def display(self, path: Path_, last: str | None = None) -> str:
        """The key path as the user wrote it, e.g. ``execution.ray.max_retries``."""
        parts: list[str] = []
        for i in range(len(path)):
            item = path[i]
            if isinstance(item, int):
                parts.append(f"[{item}]")
                continue
            text = last if (last is not None and i == len(path) - 1) else self.written.get(path[: i + 1], str(item))
            parts.append(("." if parts else "") + text)
        return "".join(parts) or "(top level)"

    def line(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest written parent."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def error(self, path: Path_, problem: str, fix: str) -> ProjectFileError:
        """A :class:`ProjectFileError` located at ``path``."""
        return ProjectFileError(self.file, self.display(path), self.line(path), problem, fix)


def _read(path: Path) -> tuple[Any, _Located]:
    located = _Located(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProjectFileError(path, "(file)", None, f"cannot read it ({exc.strerror})", "check the path") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ProjectFileError(
            path,
            "(syntax)",
            mark.line + 1 if mark else None,
            f"is not valid YAML: {exc.problem}",
            "correct the YAML syntax at that line",
        ) from exc
    if root is None:
        raise ProjectFileError(path, "(file)", None, "is empty", "write at least 'name' and 'workflow'")
    if not isinstance(root, MappingNode):
        raise ProjectFileError(
            path, "(top level)", root.start_mark.line + 1, "is not a mapping", "write 'name: ...', 'workflow: ...'"
        )
    return located.build(root), located


def _validation_error(exc: ValidationError, located: _Located) -> ProjectFileError:
    first = exc.errors()[0]
    path = tuple(first["loc"])
    problem = first["msg"]
    if first["type"] == "extra_forbidden":
        fix = "remove it or correct its spelling"
        problem = "is not a known key"
    elif first["type"] == "missing":
        fix = "add it"
        problem = "is required"
    else:
        fix = f"give a valid value (got {first.get('input')!r})"
    more = len(exc.errors()) - 1
    if more:
        problem += f" (and {more} more error{'s' if more > 1 else ''})"
    return ProjectFileError(located.file, located.display(path), located.line(path), problem, fix)


# ─── Importing the named parts ───


def _import(located: _Located, path: Path_, module: str, attribute: str) -> Any:
    try:
        return import_attribute(module, attribute)
    except ReferenceImportError as exc:
        if exc.part == "module" and isinstance(exc.cause, ModuleNotFoundError):
            raise located.error(
                (*path, "module"),
                f"module {module!r} cannot be imported ({exc.cause})",
                "check the module name and that its package is installed or on PYTHONPATH "
                "(the working directory and the file's folder are searched)",
            ) from exc
        if exc.part == "module":
            raise located.error(
                (*path, "module"),
                f"importing module {module!r} raised {type(exc.cause).__name__}: {exc.cause}",
                "fix the error in that module",
            ) from exc
        field = next((k for k in ("factory", "function", "state_schema") if (*path, k) in located.lines), "module")
        raise located.error(
            (*path, field),
            f"module {module!r} has no attribute {attribute!r}",
            f"name a function defined in {module}",
        ) from None


def _import_dotted(located: _Located, path: Path_, reference: str) -> Any:
    module, sep, attribute = reference.partition(":")
    if not sep:
        module, _, attribute = reference.rpartition(".")
    if not module or not attribute:
        raise located.error(path, f"{reference!r} is not 'package.module.Name'", "write the full dotted path")
    try:
        return _import(located, path[:-1], module, attribute)
    except ProjectFileError as exc:
        raise ProjectFileError(located.file, located.display(path), located.line(path), exc.problem, exc.fix) from exc


def _callable(located: _Located, path: Path_, module: str, attribute: str) -> Callable[..., Any]:
    value = _import(located, path, module, attribute)
    if not callable(value):
        key = "factory" if (*path, "factory") in located.lines else "function"
        raise located.error(
            (*path, key), f"{module}.{attribute} is a {type(value).__name__}, not a function", "name a function"
        )
    return value


ProjectT = TypeVar("ProjectT")


def load_project(path: str | Path, project_type: type[ProjectT]) -> ProjectT:
    """Read a project YAML file into a ``project_type`` (:class:`~wtb_prefect.define.project.WorkflowProject`).

    The project class is passed in rather than imported: ``WorkflowProject.from_yaml``
    calls this module, so importing it here would make the two import each other.

    The working directory and the file's folder are put on ``sys.path`` so
    that modules next to the file can be imported.

    Raises:
        ProjectFileError: unreadable or invalid YAML, an unknown key, a wrong
            type, a module or attribute that cannot be imported, a variant for
            an unknown node; the message names the file, the key and the line.
    """
    file = Path(path).expanduser().resolve()
    data, located = _read(file)
    try:
        spec = ProjectFile.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, located) from None
    on_sys_path(Path.cwd())
    on_sys_path(file.parent)

    w = spec.workflow
    factory = _callable(located, ("workflow",), w.module, w.factory)
    schema = _import_dotted(located, ("workflow", "state_schema"), w.state_schema) if w.state_schema else None
    root = (file.parent / spec.root).resolve() if spec.root else file.parent
    execution = spec.execution
    if spec.race is not None:
        if execution is not None and execution.race is not None:
            raise located.error(("race",), "is given twice (also as execution.race)", "keep one of them")
        execution = execution or ExecutionConfig()
        execution.race = spec.race
    try:
        project = project_type(
            name=spec.name,
            graph_factory=factory,
            state_schema=schema,
            description=spec.description,
            file_tracking=spec.file_tracking,
            environment=spec.environment,
            execution=execution,
            root=root,
        )
    except ProjectError as exc:
        key = ("workflow", "factory") if "graph_factory" in str(exc) else ("name",)
        raise located.error(key, str(exc), "see the message") from exc

    for i, wv in enumerate(spec.variants.workflows):
        where: Path_ = ("variants", "workflows", i)
        wv_factory = _callable(located, where, wv.module, wv.factory)
        wv_schema = _import_dotted(located, (*where, "state_schema"), wv.state_schema) if wv.state_schema else None
        try:
            project.register_workflow_variant(wv.name, wv_factory, wv.description, wv_schema)
        except ProjectError as exc:
            raise located.error(where, str(exc), "see the message") from exc

    for node, variants in spec.variants.nodes.items():
        for i, nv in enumerate(variants):
            where = ("variants", "nodes", node, i)
            function = _callable(located, where, nv.module, nv.function)
            try:
                project.register_variant(node, nv.name, function, nv.description, nv.environment, nv.resources)
            except ProjectError as exc:
                key = ("variants", "nodes", node) if node not in project.all_nodes() else where
                raise located.error(key, str(exc), "see the message") from exc

    for i, ev in enumerate(spec.evaluators):
        project.register_evaluator(ev.name, _callable(located, ("evaluators", i), ev.module, ev.function))
    return project


# ─── Writing ───


def _reference(obj: Any, what: str) -> tuple[str, str]:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise ProjectError(
            f"to_yaml: {what} ({qualname or obj!r} in {module}) cannot be named by module and attribute. "
            "Fix: define it at the top level of an importable module (not a lambda, closure or __main__)"
        )
    try:
        target: Any = import_attribute(module, qualname)
    except ReferenceImportError:
        target = None
    if target is not obj:
        raise ProjectError(
            f"to_yaml: {what} {module}.{qualname} is not the object that importing that name gives. "
            "Fix: register the module-level function itself"
        )
    return module, qualname


def _config(model: BaseModel | None, aliases: dict[str, str]) -> dict[str, Any] | None:
    if model is None:
        return None
    data = model.model_dump(mode="json", exclude_defaults=True)
    inverse = {v: k for k, v in aliases.items()}
    return {inverse.get(k, k): v for k, v in data.items()} or None


def _env(spec: EnvSpec | None) -> dict[str, Any] | None:
    return _config(spec, _ENV_ALIASES)


def dump_project(project: Any, path: str | Path | None = None) -> str:
    """The YAML text of ``project`` (a ``WorkflowProject``), written to ``path`` when given.

    The current version's graph is written; the version history is not.

    Raises:
        ProjectError: a part (graph factory, state schema, variant, evaluator)
            is a lambda, closure or otherwise not importable by name, or the
            current version has permanent node updates (``update_node``).
    """
    version = project.current_version
    if version.node_overrides:
        raise ProjectError(
            f"to_yaml: version {version.version} of project {project.name!r} has permanent node updates "
            f"({sorted(version.node_overrides)}) that a project file cannot express. "
            "Fix: make them part of the graph factory, or register them as variants"
        )
    module, factory = _reference(version.graph_factory, "the graph factory")
    workflow: dict[str, Any] = {"module": module, "factory": factory}
    if version.state_schema is not None:
        workflow["state_schema"] = "{}.{}".format(*_reference(version.state_schema, "the state schema"))
    doc: dict[str, Any] = {"name": project.name}
    if project.description:
        doc["description"] = project.description
    doc["workflow"] = workflow

    nodes: dict[str, list[dict[str, Any]]] = {}
    for node, names in project.list_variants().items():
        for name in names:
            variant = project.get_variant(node, name)
            mod, fn = _reference(variant.implementation, f"variant {node}:{name}")
            entry: dict[str, Any] = {"name": name, "module": mod, "function": fn}
            if variant.description:
                entry["description"] = variant.description
            if (env := _env(variant.environment)) is not None:
                entry["environment"] = env
            if variant.resources is not None:
                entry["resources"] = variant.resources.model_dump(mode="json", exclude_defaults=True)
            nodes.setdefault(node, []).append(entry)
    workflows = []
    for name in project.list_workflow_variants():
        wv = project.get_workflow_variant(name)
        mod, fn = _reference(wv.graph_factory, f"workflow variant {name}")
        entry = {"name": name, "module": mod, "factory": fn}
        if wv.description:
            entry["description"] = wv.description
        if wv.state_schema is not None and wv.state_schema is not version.state_schema:
            entry["state_schema"] = "{}.{}".format(*_reference(wv.state_schema, f"state schema of {name}"))
        workflows.append(entry)
    if nodes or workflows:
        doc["variants"] = {k: v for k, v in (("nodes", nodes), ("workflows", workflows)) if v}
    evaluators = []
    for name, fn in project.evaluators.items():
        mod, attr = _reference(fn, f"evaluator {name}")
        evaluators.append({"name": name, "module": mod, "function": attr})
    if evaluators:
        doc["evaluators"] = evaluators

    if (ft := _config(project.file_tracking, _SECTION_ALIASES[("file_tracking",)])) is not None:
        doc["file_tracking"] = ft
    env_cfg = project.environment
    env_doc = _config(env_cfg, _SECTION_ALIASES[("environment",)])
    if env_doc is not None:
        if env_cfg.default_env is not None:
            env_doc["default"] = _env(env_cfg.default_env) or {}
        for key in ("node_environments", "variant_environments"):
            if key in env_doc:
                env_doc[key] = {k: _env(v) or {} for k, v in getattr(env_cfg, key).items()}
        doc["environment"] = env_doc
    if (ex := _config(project.execution, _SECTION_ALIASES[("execution",)])) is not None:
        race = ex.pop("race", None)
        if ex:
            doc["execution"] = ex
        if race is not None:
            doc["race"] = race
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if path is not None:
        Path(path).write_text(text)
    return text

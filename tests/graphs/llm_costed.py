"""Graphs whose nodes call a real LangChain chat model (``ChatOpenAI``) against the stand-in provider.

The provider's URL travels in the state (``base_url``): node bodies run in Ray
workers started before the test's provider, so an environment variable set by
the test would not reach them. Each node calls its own model name, so the
provider's request log tells which node made which request.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import create_react_agent
from typing_extensions import TypedDict

MODELS = {
    "plan": "gpt-4o-mini",  # sync def, a Ray task
    "plan_terse": "gpt-4o-mini",
    "draft": "gpt-4.1-nano",  # async def, the async I/O lane
    "draft_long": "gpt-4.1-nano",
    "polish": "gpt-4o",  # sync def streaming, marked io_bound: the threaded I/O lane
    "agent": "gpt-4.1-mini",  # create_react_agent with a tool, inside the node
    "think": "o4-mini",  # the looping agent's model node
}


class Doc(TypedDict, total=False):
    base_url: str
    question: str
    plan: str
    draft: str
    answer: str
    notes: Annotated[list[str], operator.add]


def llm(state: Doc, node: str) -> ChatOpenAI:
    """The node's chat model on the stand-in (its model name says which node called)."""
    return ChatOpenAI(
        base_url=state["base_url"], api_key="stand-in", model=MODELS[node], stream_usage=True, max_retries=0
    )


def plan(state: Doc) -> dict[str, Any]:
    return {"plan": llm(state, "plan").invoke(f"plan an answer to: {state['question']}").content}


def plan_terse(state: Doc) -> dict[str, Any]:
    return {"plan": llm(state, "plan_terse").invoke(f"terse plan: {state['question']}").content}


async def draft(state: Doc) -> dict[str, Any]:
    reply = await llm(state, "draft").ainvoke(f"draft from the plan: {state['plan']}")
    return {"draft": reply.content}


async def draft_long(state: Doc) -> dict[str, Any]:
    first = await llm(state, "draft_long").ainvoke(f"long draft, part one: {state['plan']}")
    second = await llm(state, "draft_long").ainvoke(f"long draft, part two: {first.content}")
    return {"draft": f"{first.content} {second.content}"}


def polish(state: Doc) -> dict[str, Any]:
    text = "".join(str(chunk.content) for chunk in llm(state, "polish").stream(f"polish: {state['draft']}"))
    return {"answer": text}


@tool
def lookup(query: str) -> str:
    """Look a fact up."""
    return f"a fact about {query}"


def agent(state: Doc) -> dict[str, Any]:
    """A prebuilt ReAct agent inside the node: it calls ``lookup`` once, then answers."""
    react = create_react_agent(llm(state, "agent"), [lookup])
    out = react.invoke({"messages": [("user", state["question"])]})
    return {"notes": [str(out["messages"][-1].content)]}


def pipeline() -> Any:
    """plan (Ray task) -> draft (async lane) -> polish (threaded lane, streaming) -> agent (ReAct inside)."""
    graph = StateGraph(Doc)
    graph.add_node("plan", plan)
    graph.add_node("draft", draft)
    graph.add_node("polish", polish)
    graph.add_node("agent", agent)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "draft")
    graph.add_edge("draft", "polish")
    graph.add_edge("polish", "agent")
    graph.add_edge("agent", END)
    return graph.compile()


def think(state: Doc) -> dict[str, Any]:
    """One step of an agent: the model asks for the tool, the node runs it."""
    bound = llm(state, "think").bind_tools([lookup])
    reply = bound.invoke(f"think about {state['question']} ({len(state.get('notes', []))} notes so far)")
    calls = reply.tool_calls
    return {"notes": [lookup.invoke(calls[0]["args"]) if calls else "done"]}


def _again(state: Doc) -> str:
    if "forever" in state["question"]:
        return "think"  # an agent stuck in a loop: only a limit stops it
    return "think" if len(state["notes"]) < 2 else END


def looping_agent() -> Any:
    """think -> think: twice, or forever when the question says "forever"."""
    graph = StateGraph(Doc)
    graph.add_node("think", think)
    graph.add_edge(START, "think")
    graph.add_conditional_edges("think", _again, ["think", END])
    return graph.compile()


def project() -> Any:
    """The pipeline as a WorkflowProject (for the CLI: ``tests.graphs.llm_costed:project``)."""
    from wtb_prefect import ExecutionConfig, NodeResourceConfig, WorkflowProject

    proj = WorkflowProject(
        name="llm_costed_cli",
        graph_factory=pipeline,
        state_schema=Doc,
        execution=ExecutionConfig(
            default_node_resources=NodeResourceConfig(num_cpus=0.05, memory="64MB"),
            checkpoint_storage="memory",
        ),
    )
    proj.register_variant(node="draft", name="long", implementation=draft_long)
    return proj

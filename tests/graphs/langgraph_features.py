"""LangGraph graphs covering LangGraph's features, used to check that a run
through WTB ends in exactly the state ``graph.invoke`` gives.

They live in an importable module so Ray workers can import the node functions.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Literal

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, Send
from pydantic import BaseModel
from typing_extensions import TypedDict


# 1. Linear pipeline with a pydantic state (the specification's RAG example)
class RAGState(BaseModel):
    query: str
    documents: list[str] = []
    answer: str = ""


CORPUS = {
    "langgraph": "LangGraph builds stateful multi-actor applications as graphs.",
    "rag": "Retrieval augmented generation retrieves documents before generating.",
    "vector": "Vector search finds nearest neighbours of an embedding.",
    "prefect": "Prefect orchestrates flows made of tasks.",
}


def _tokens(text: str) -> set[str]:
    return {t.strip("?.,!").lower() for t in text.split()}


def keyword_retriever(state: RAGState) -> dict:
    """Rank documents by word overlap with the query; keep the top two."""
    q = _tokens(state.query)
    ranked = sorted(CORPUS.values(), key=lambda d: (-len(q & _tokens(d)), d))
    return {"documents": ranked[:2]}


def prefix_retriever(state: RAGState) -> dict:
    """Keep documents whose key appears in the query."""
    return {"documents": [d for k, d in CORPUS.items() if k in state.query.lower()]}


def reranker(state: RAGState) -> dict:
    """Keep the shortest document first."""
    return {"documents": sorted(state.documents, key=len)}


def generator(state: RAGState) -> dict:
    return {"answer": f"Answer based on {state.documents}"}


def first_sentence_generator(state: RAGState) -> dict:
    return {"answer": state.documents[0].split(".")[0] if state.documents else "I don't know"}


def rag_graph():
    graph = StateGraph(RAGState)
    graph.add_node("retriever", keyword_retriever)
    graph.add_node("generator", generator)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", "generator")
    graph.add_edge("generator", END)
    return graph.compile()


def rag_with_reranker_graph():
    graph = StateGraph(RAGState)
    graph.add_node("retriever", keyword_retriever)
    graph.add_node("reranker", reranker)
    graph.add_node("generator", generator)
    graph.add_edge(START, "retriever")
    graph.add_edge("retriever", "reranker")
    graph.add_edge("reranker", "generator")
    graph.add_edge("generator", END)
    return graph.compile()


# 2. Parallel branches joined by a reducer (TypedDict state)
class FanState(TypedDict, total=False):
    x: int
    results: Annotated[list[str], operator.add]
    total: int


def branch_a(state: FanState) -> dict:
    return {"results": [f"a{state['x']}"]}


def branch_b(state: FanState) -> dict:
    return {"results": [f"b{state['x'] * 2}"]}


def join(state: FanState) -> dict:
    return {"total": len(state["results"])}


def parallel_graph():
    graph = StateGraph(FanState)
    graph.add_node("a", branch_a)
    graph.add_node("b", branch_b)
    graph.add_node("join", join)
    graph.add_edge(START, "a")
    graph.add_edge(START, "b")
    graph.add_edge(["a", "b"], "join")
    graph.add_edge("join", END)
    return graph.compile()


# 3. Conditional edges
class RouteState(TypedDict, total=False):
    n: int
    path: Annotated[list[str], operator.add]


def classify(state: RouteState) -> dict:
    return {"path": ["classify"]}


def route(state: RouteState) -> Literal["even", "odd"]:
    return "even" if state["n"] % 2 == 0 else "odd"


def even(state: RouteState) -> dict:
    return {"path": ["even"], "n": state["n"] // 2}


def odd(state: RouteState) -> dict:
    return {"path": ["odd"], "n": 3 * state["n"] + 1}


def conditional_graph():
    graph = StateGraph(RouteState)
    graph.add_node("classify", classify)
    graph.add_node("even", even)
    graph.add_node("odd", odd)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", route, {"even": "even", "odd": "odd"})
    graph.add_edge("even", END)
    graph.add_edge("odd", END)
    return graph.compile()


# 4. A cycle that runs until a condition holds
class LoopState(TypedDict, total=False):
    count: int
    log: Annotated[list[int], operator.add]


def step(state: LoopState) -> dict:
    return {"count": state["count"] + 1, "log": [state["count"]]}


def should_continue(state: LoopState) -> str:
    return "step" if state["count"] < 5 else END


def cycle_graph():
    graph = StateGraph(LoopState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", should_continue, ["step", END])
    return graph.compile()


# 5. Send fan-out (map-reduce)
class MapState(TypedDict, total=False):
    items: list[int]
    squares: Annotated[list[int], operator.add]
    total: int


class ItemState(TypedDict):
    item: int


def fan_out(state: MapState) -> list[Send]:
    return [Send("square", {"item": i}) for i in state["items"]]


def square(state: ItemState) -> dict:
    return {"squares": [state["item"] ** 2]}


def reduce_squares(state: MapState) -> dict:
    return {"total": sum(state["squares"])}


def send_graph():
    graph = StateGraph(MapState)
    graph.add_node("square", square)
    graph.add_node("reduce", reduce_squares)
    graph.add_conditional_edges(START, fan_out, ["square"])
    graph.add_edge("square", "reduce")
    graph.add_edge("reduce", END)
    return graph.compile()


# 6. Command: a node updates state and chooses the next node
class CommandState(TypedDict, total=False):
    value: int
    trail: Annotated[list[str], operator.add]


def decide(state: CommandState) -> Command[Literal["big", "small"]]:
    target = "big" if state["value"] > 10 else "small"
    return Command(update={"trail": [f"decide->{target}"], "value": state["value"] + 1}, goto=target)


def big(state: CommandState) -> dict:
    return {"trail": ["big"]}


def small(state: CommandState) -> dict:
    return {"trail": ["small"]}


def command_graph():
    graph = StateGraph(CommandState)
    graph.add_node("decide", decide)
    graph.add_node("big", big)
    graph.add_node("small", small)
    graph.add_edge(START, "decide")
    graph.add_edge("big", END)
    graph.add_edge("small", END)
    return graph.compile()


# 7. Dataclass state
@dataclass
class Counter:
    name: str
    hits: int = 0
    seen: list[str] = field(default_factory=list)


def count_letters(state: Counter) -> dict:
    return {"hits": sum(c.isalpha() for c in state.name), "seen": [state.name.upper()]}


def describe(state: Counter) -> dict:
    return {"seen": state.seen + [f"{state.hits} letters"]}


def dataclass_graph():
    graph = StateGraph(Counter)
    graph.add_node("count", count_letters)
    graph.add_node("describe", describe)
    graph.add_edge(START, "count")
    graph.add_edge("count", "describe")
    graph.add_edge("describe", END)
    return graph.compile()


# 8. Messages with the add_messages reducer, and a node that reads its config
class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def echo_bot(state: ChatState, config: RunnableConfig) -> dict:
    style = config.get("configurable", {}).get("style", "plain")
    last = state["messages"][-1].content
    return {"messages": [AIMessage(content=f"[{style}] {last}", id=f"ai-{len(state['messages'])}")]}


def shout(state: ChatState) -> dict:
    return {"messages": [HumanMessage(content=state["messages"][-1].content.upper(), id="shout")]}


def messages_graph():
    graph = StateGraph(ChatState)
    graph.add_node("bot", echo_bot)
    graph.add_node("shout", shout)
    graph.add_edge(START, "bot")
    graph.add_edge("bot", "shout")
    graph.add_edge("shout", END)
    return graph.compile()


# 9. A compiled subgraph used as a node, next to ordinary nodes
class SubState(TypedDict, total=False):
    text: str
    words: int


def tokenize(state: SubState) -> dict:
    return {"words": len(state["text"].split())}


def inner_graph():
    graph = StateGraph(SubState)
    graph.add_node("tokenize", tokenize)
    graph.add_edge(START, "tokenize")
    graph.add_edge("tokenize", END)
    return graph.compile()


def clean(state: SubState) -> dict:
    return {"text": " ".join(state["text"].split())}


def subgraph_graph():
    graph = StateGraph(SubState)
    graph.add_node("clean", clean)
    graph.add_node("inner", inner_graph())
    graph.add_edge(START, "clean")
    graph.add_edge("clean", "inner")
    graph.add_edge("inner", END)
    return graph.compile()


# Graph factories used by the bad-input tests
def uncompiled_graph():
    graph = StateGraph(RAGState)
    graph.add_node("retriever", keyword_retriever)
    graph.add_edge(START, "retriever")
    return graph


def failing_node(state: RAGState) -> dict:
    raise ValueError(f"cannot answer {state.query!r}")


# 12. The same features with ``async def`` nodes (they run on an I/O lane's actors)
async def abranch_a(state: FanState) -> dict:
    return {"results": [f"a{state['x']}"]}


async def abranch_b(state: FanState) -> dict:
    return {"results": [f"b{state['x'] * 2}"]}


async def ajoin(state: FanState) -> dict:
    return {"total": len(state["results"])}


def async_parallel_graph():
    graph = StateGraph(FanState)
    graph.add_node("a", abranch_a)
    graph.add_node("b", abranch_b)
    graph.add_node("join", ajoin)
    graph.add_edge(START, "a")
    graph.add_edge(START, "b")
    graph.add_edge(["a", "b"], "join")
    graph.add_edge("join", END)
    return graph.compile()


async def asquare(state: ItemState) -> dict:
    return {"squares": [state["item"] ** 2]}


async def areduce_squares(state: MapState) -> dict:
    return {"total": sum(state["squares"])}


def async_send_graph():
    graph = StateGraph(MapState)
    graph.add_node("square", asquare)
    graph.add_node("reduce", areduce_squares)
    graph.add_conditional_edges(START, lambda s: [Send("square", {"item": i}) for i in s["items"]], ["square"])
    graph.add_edge("square", "reduce")
    graph.add_edge("reduce", END)
    return graph.compile()


async def adecide(state: CommandState) -> Command[Literal["big", "small"]]:
    target = "big" if state["value"] > 10 else "small"
    return Command(update={"trail": ["decide"]}, goto=target)


async def abig(state: CommandState) -> dict:
    return {"trail": ["big"]}


async def asmall(state: CommandState) -> dict:
    return {"trail": ["small"]}


def async_command_graph():
    graph = StateGraph(CommandState)
    graph.add_node("decide", adecide)
    graph.add_node("big", abig)
    graph.add_node("small", asmall)
    graph.add_edge(START, "decide")
    graph.add_edge("big", END)
    graph.add_edge("small", END)
    return graph.compile()


async def aecho_bot(state: ChatState, config: RunnableConfig) -> dict:
    style = config.get("configurable", {}).get("style", "plain")
    last = state["messages"][-1].content
    return {"messages": [AIMessage(content=f"[{style}] {last}", id=f"ai-{len(state['messages'])}")]}


async def ashout(state: ChatState) -> dict:
    return {"messages": [HumanMessage(content=state["messages"][-1].content.upper(), id="shout")]}


def async_messages_graph():
    graph = StateGraph(ChatState)
    graph.add_node("bot", aecho_bot)
    graph.add_node("shout", ashout)
    graph.add_edge(START, "bot")
    graph.add_edge("bot", "shout")
    graph.add_edge("shout", END)
    return graph.compile()

"""What LLM variants cost: a two-node ChatOpenAI graph priced per node, with sharing savings and a budget."""

"""The quick-start project: a small retrieval QA graph with two retriever variants."""

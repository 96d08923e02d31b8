"""Defining what to test: projects, their variants, YAML in and out, variant resolution, state.

Plain Python over LangGraph's graph objects; nothing here talks to a service.
"""

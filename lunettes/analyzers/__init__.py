"""Analyzers: stage definitions and markers, and the DAG of analyzers each Pod timeline
runs through (see README.md)."""

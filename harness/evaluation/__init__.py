"""Evaluation: distances, named protocols, ranking metrics, k-reciprocal re-ranking.

The entry points are in :mod:`vireid.harness.evaluation.evaluate`; docs/evaluation.md describes
the protocols and the metric semantics.
"""

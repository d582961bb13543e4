"""Evaluation (stages.md §10): metric functions, the ``evaluate`` tables and their serialisation."""

from zeitflow.evaluation.tables import EvaluationTables, evaluate
from zeitflow.options.evaluation import EvaluationOptions

__all__ = ["EvaluationOptions", "EvaluationTables", "evaluate"]

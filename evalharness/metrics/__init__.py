"""Metrics: pure per-item functions and aggregations (functions.py) and the registry task specs name them from."""

from .functions import (
                        MC_METRICS,
                        AnswerRule,
                        MetricValue,
                        exact_match,
                        llm_foundry_normalize,
                        lm_acc,
                        macro_mean,
                        mc_predictions,
                        mc_scores,
                        mean_with_stderr,
                        micro_mean,
                        normalize_answer,
                        perplexity,
)
from .registry import AGGREGATIONS, Aggregation, Metric, Outcome, get_metric, metric_names, register_metric

__all__ = [
    "AGGREGATIONS", "Aggregation", "AnswerRule", "MC_METRICS", "Metric", "MetricValue", "Outcome", "exact_match", "get_metric",
    "llm_foundry_normalize", "lm_acc", "macro_mean", "mc_predictions", "mc_scores", "mean_with_stderr", "metric_names", "micro_mean",
    "normalize_answer", "perplexity", "register_metric",
]

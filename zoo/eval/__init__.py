"""The evaluation harness behind ``zoo eval``: one facade over task plugins.

A task (`EvalTask`) sets up on reference data, scores batches of each input it names, and finalises the scores
into the paper's metrics. The harness owns everything tasks share: loading the model, device and precision,
progress bars, saving raw scores (so metrics can be recomputed), the JSON result and the printed table.
"""

from .base import EvalContext, EvalTask, evaluate, get_task, load_model, list_tasks

__all__ = ["EvalContext", "EvalTask", "evaluate", "get_task", "list_tasks", "load_model"]

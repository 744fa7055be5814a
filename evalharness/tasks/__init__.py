"""Tasks: specs (YAML, validated), the registry with its search path, and tasks at run time."""

from .registry import TASKS_PATH_ENV, TaskRegistry, search_path
from .spec import GenerationSpec, MetricSpec, TaskSpec, parse_task_spec
from .task import Item, ScoredItem, Task

__all__ = ["GenerationSpec", "Item", "MetricSpec", "ScoredItem", "TASKS_PATH_ENV", "Task", "TaskRegistry", "TaskSpec",
           "parse_task_spec", "search_path"]

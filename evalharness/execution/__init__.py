"""Executing model-written code: the sandbox, HumanEval programs and the pass@k estimator.

`Sandbox(allow_code_execution=True)` runs `Program`s in isolated processes (see docs/code-execution.md);
`ensure_code_execution_allowed` is the consent check tasks call before generating anything.
"""

from .consent import ensure_code_execution_allowed
from .humaneval import HumanEvalProblem, build_program, humaneval_data_path, load_problems
from .passk import pass_at_k
from .policy import DEFAULT_UID_BASE, Isolation, Limits
from .program import Program
from .result import ExecutionResult, Status
from .sandbox import Sandbox, available_cores

#: Program builders a generation task can name (`generation.program`): (document, completion) -> Program.
PROGRAM_BUILDERS = {"humaneval": build_program}

__all__ = [
    "DEFAULT_UID_BASE", "ExecutionResult", "HumanEvalProblem", "Isolation", "Limits", "PROGRAM_BUILDERS", "Program", "Sandbox",
    "Status", "available_cores", "build_program", "ensure_code_execution_allowed", "humaneval_data_path",
    "load_problems", "pass_at_k",
]

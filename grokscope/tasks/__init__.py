"""Tasks: the datasets a model is trained and scored on, one package each, found by name.

    grokscope.tasks.get_task("modular")        # its TaskSpec (see `registry`)
    grokscope.tasks.make_task(task_cfg)        # a Task built from a TaskConfig

Built-in: `modular` (a op b mod p, Power et al. / Nanda et al.) and `addition` (n-digit
decimal addition in the 777-adder format). Register another with `register_task`.
This package imports nothing heavy: a task's own package is imported on first use.
"""

from grokscope.tasks.registry import (
    BUILTIN_TASKS,
    Task,
    TaskSpec,
    get_task,
    make_task,
    register_measure,
    register_task,
    task_measures,
    task_names,
    unregister_measure,
    unregister_task,
)

__all__ = ["BUILTIN_TASKS", "Task", "TaskSpec", "get_task", "make_task", "register_measure", "register_task",
           "task_measures", "task_names", "unregister_measure", "unregister_task"]

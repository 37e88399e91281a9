"""Modular arithmetic `a op b mod p` (Power et al.; Nanda et al.): the task, registered as
"modular".

- `config`: the ops and the validation of a modular TaskConfig;
- `data`: the enumerated dataset and its split (`ModularTask`);
- `measures`: what `grokscope analyze` measures at every checkpoint;
- `figures`: the report's figures and summary rows;
- `on_task`: the measures as `measure(model, task, ...)` for research scripts.
"""

from grokscope.figures import PHASE_DOC
from grokscope.tasks.modular.config import MODULAR_OPS, describe_modular, is_prime, validate_modular_config
from grokscope.tasks.modular.data import ModularTask, apply_op, modular_inverse, random_split
from grokscope.tasks.modular.figures import modular_figures, modular_summary
from grokscope.tasks.modular.measures import margin_sweep_columns, modular_measures
from grokscope.tasks.registry import TaskSpec, register_task

SPEC = register_task(TaskSpec(
    name="modular",
    build=ModularTask.from_split,
    validate=validate_modular_config,
    measures=modular_measures,
    figures=modular_figures,
    summary=modular_summary,
    describe=describe_modular,
    report_notes_html=PHASE_DOC,
    config_fields=("op", "p", "train_frac", "split_seed"),
    sweep_columns=margin_sweep_columns,
))

__all__ = ["MODULAR_OPS", "SPEC", "ModularTask", "apply_op", "is_prime", "modular_inverse", "random_split"]

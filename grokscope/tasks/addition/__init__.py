"""n-digit decimal addition in the 777-adder format, registered as "addition".

- `format`: the token format and the validation of an addition TaskConfig (plain Python);
- `data`: digits and sequences as tensors, and the streamed task (`AdditionTask`);
- `measures`: what `grokscope analyze` measures at every checkpoint;
- `figures`: the report's figures and summary rows;
- `verify`: AdderBoard-style verification by greedy decoding (`grokscope verify`);
- `sweep_figures`: the sweep report's comparison of failed and successful seeds.
"""

from grokscope.tasks.addition.data import (
    N_EVAL,
    AdditionTask,
    add_digits,
    build_sequences,
    digits_to_int,
    int_to_digits,
    longest_carry_chain,
    powers_of_ten,
    sample_operand_digits,
    sequences_from_ints,
)
from grokscope.tasks.addition.figures import addition_figures, addition_summary
from grokscope.tasks.addition.format import describe_addition, validate_addition_config
from grokscope.tasks.addition.measures import addition_measures
from grokscope.tasks.addition.sweep_figures import seed_failure_figures
from grokscope.tasks.registry import TaskSpec, register_task

SPEC = register_task(TaskSpec(
    name="addition",
    build=AdditionTask.from_split,
    validate=validate_addition_config,
    measures=addition_measures,
    figures=addition_figures,
    summary=addition_summary,
    describe=describe_addition,
    config_fields=("n_digits", "curriculum", "n_ctx", "carry_boost", "copy_boost", "split_seed"),
    sweep_figures=seed_failure_figures,
))

__all__ = ["N_EVAL", "SPEC", "AdditionTask", "add_digits", "build_sequences", "digits_to_int", "int_to_digits",
           "longest_carry_chain", "powers_of_ten", "sample_operand_digits", "sequences_from_ints"]

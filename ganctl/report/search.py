"""An Optuna sweep's search, read back from its jobs: the history of its trials and how much each
parameter mattered. hydra-optuna-sweeper keeps its study in memory, so the study is rebuilt from what
every job recorded (its swept values and objective) and the search space its sweep was given."""

from __future__ import annotations

import warnings
from html import escape
from typing import Any, Optional

from ganctl.report.charts import line_chart
from ganctl.report.page import table


def history_chart(done: list[dict[str, Any]]) -> str:
    """Each finished trial's objective in the order the trials ran (Hydra numbers its jobs so), and the
    best value so far."""
    if not done:
        return "<p class=\"muted\">No trial has an objective yet.</p>"
    steps = [int(row["job"]) if str(row["job"]).isdigit() else i for i, row in enumerate(done)]
    values = [float(row["objective"]) for row in done]
    best = [min(values[:i + 1]) for i in range(len(values))]
    chart = line_chart("objective of each trial (lower is better)", [("objective", steps, values), ("best so far", steps, best)],
                       x_label="trial (job number)", markers=True)
    return f"<h3>History</h3><div class=\"charts\">{chart}</div>"


def search_space(arguments: Optional[list[str]], params: dict[str, Any], done: list[dict[str, Any]]) -> dict[str, Any]:
    """The Optuna distribution of each swept key, parsed by the plugin's own code from the sweep's
    command line (sweep.json's `overrides`) and `hydra.sweeper.params`. A sweep from before sweep.json
    kept its command line: each key's distribution spans the values its trials took."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from optuna.distributions import CategoricalDistribution, UniformDistribution

    if arguments is not None:
        distributions, _ = create_params_from_overrides([*arguments, *(f"{key}={value}" for key, value in params.items())])
        return {key.lstrip("+~"): distribution for key, distribution in distributions.items()}
    space: dict[str, Any] = {}
    for key in done[0]["values"]:
        values = [row["values"][key] for row in done]
        numbers = [float(value) for value in values if is_number(value)]
        space[key] = (UniformDistribution(min(numbers), max(numbers)) if len(numbers) == len(values) and min(numbers) < max(numbers)
                      else CategoricalDistribution(sorted(set(values))))
    return space


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def trial_value(text: str, distribution: Any) -> Any:
    """A job's swept value (the text of its override) as the distribution holds it."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return next(choice for choice in distribution.choices if str(choice) == text)
    return int(text) if isinstance(distribution, int_distributions()) else float(text)


def int_distributions() -> tuple[type, ...]:
    """Optuna's distributions of whole numbers: IntUniform and IntLogUniform in optuna 2, Int in 3 and later."""
    from optuna import distributions

    names = ("IntUniformDistribution", "IntLogUniformDistribution", "IntDistribution")
    return tuple(vars(distributions)[name] for name in names if name in vars(distributions))


def importances(arguments: Optional[list[str]], params: dict[str, Any], done: list[dict[str, Any]]) -> str:
    """Optuna's parameter importances of the finished trials: the mean decrease in impurity of a random
    forest fitted to them (optuna's MeanDecreaseImpurityImportanceEvaluator, seed 0), since the default
    fANOVA evaluator of the optuna 2.10 the plugin pins fails under numpy 2. Both need scikit-learn."""
    heading = "<h3>Parameter importances</h3>"
    if len(done) < 2:
        return heading + "<p class=\"muted\">Importances need at least 2 finished trials.</p>"
    try:
        import optuna
        from optuna.importance import MeanDecreaseImpurityImportanceEvaluator, get_param_importances

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = search_space(arguments, params, done)
        study = optuna.create_study(direction="minimize")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for row in done:
                params = {key: trial_value(row["values"][key], space[key]) for key in space if key in row["values"]}
                study.add_trial(optuna.trial.create_trial(params=params, distributions={key: space[key] for key in params},
                                                          value=float(row["objective"])))
            found = get_param_importances(study, evaluator=MeanDecreaseImpurityImportanceEvaluator(seed=0))
    except ImportError as error:
        return heading + f"<p class=\"muted\">Not computed: {escape(str(error).splitlines()[0])} (pip install scikit-learn).</p>"
    except Exception as error:  # a search space the jobs' values do not fit (edited by hand), optuna's own refusals
        return heading + f"<p class=\"muted\">Not computed: {escape(type(error).__name__)}: {escape(str(error)[:200])}</p>"
    return (heading + f"<p class=\"muted\">From {len(done)} finished trials: how much of the objective's variation a random "
            "forest fitted to them puts down to each parameter (Optuna's mean-decrease-in-impurity importances; they add up to 1).</p>"
            + table(["parameter", "importance"], [(key, value) for key, value in found.items()]))

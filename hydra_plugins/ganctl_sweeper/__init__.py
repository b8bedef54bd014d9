"""ganctl's Optuna sweeper: hydra-optuna-sweeper's own, except at the end of a sweep in which every
trial failed. The plugin then asks Optuna for the best trial and dies in a traceback ("No trials
are completed yet"); here the sweep ends as any sweep with failed jobs does: one line, ganctl's
summary, exit code 1. ganctl's sweep callback (ganctl.sweep.SweepSummary) puts this class in place
of the plugin's when a sweep starts. Hydra requires sweepers to live in the hydra_plugins package."""

from __future__ import annotations

import logging
from typing import Any, List

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # the optional ganctl[sweep] extra is not installed: no sweeper here
    OptunaSweeper = None

if OptunaSweeper is not None:

    def not_about_a_failed_job(record: logging.LogRecord) -> bool:
        """A failed ganctl job returns None (no value), which the plugin logs as "Return value must
        be float-castable. Got 'None'." twice per trial; the job already said why it failed."""
        return "Got 'None'" not in record.getMessage()

    class GanctlOptunaSweeper(OptunaSweeper):
        def sweep(self, arguments: List[str]) -> Any:
            logging.getLogger("hydra_plugins.hydra_optuna_sweeper._impl").addFilter(not_about_a_failed_job)
            try:
                return super().sweep(arguments)
            except (ValueError, RuntimeError) as error:
                if "No trials are completed yet" in str(error):
                    message = "Every trial of the Optuna sweep failed, so it has no best value"
                elif "Study.stop" in str(error):  # optuna's GridSampler stops the study as the plugin records a failure
                    message = "The last trial of the grid failed, and the plugin stops without a result"
                else:
                    raise
                from ganctl.console import print_error

                print_error(f"{message} (no optimization_results.yaml); the summary below says why each trial failed.")
                raise SystemExit(1) from None

"""Pass or fail: accuracy budgets, failed variants, and the latency gate against a baseline run.

Only this package decides. ``optbench check`` exits 0 when everything holds, 1 when anything is
violated, 2 for a usage or spec error. Every violation says the variant, the metric, the
value, the budget, and the setting that would have passed.

One module per idea: ``budgets`` (the keys and the budget a row is held to), ``accuracy`` (outputs against
budgets), ``conversion`` (the fp32 noise floor and conversion defects), ``serving`` (serving bounds and budgets),
``constraints`` (deployment constraints), ``latency`` (the gate against a baseline), ``whole_run`` (a run
directory's check), ``results`` (what a check says) and ``junit`` (that as JUnit XML).
"""

from optbench.check.accuracy import check_accuracy
from optbench.check.budgets import (
    METRICS,
    NOISE_FLOOR_MAX,
    SERVING_KEYS,
    budget_for,
    known_keys,
    metric_of,
    output_budgets,
    parse_overrides,
    passing_setting,
)
from optbench.check.constraints import check_constraints
from optbench.check.conversion import blame, conversion_defects, conversion_steps, noise_floor, second_opinions
from optbench.check.latency import check_latency, env_differences, retimer
from optbench.check.results import Report, Result
from optbench.check.serving import check_serving
from optbench.check.whole_run import check_run

__all__ = ["METRICS", "NOISE_FLOOR_MAX", "SERVING_KEYS", "Report", "Result", "blame", "budget_for", "check_accuracy",
           "check_constraints", "check_latency", "check_run", "check_serving", "conversion_defects",
           "conversion_steps", "env_differences", "known_keys", "metric_of", "noise_floor", "output_budgets",
           "parse_overrides", "passing_setting", "retimer", "second_opinions"]

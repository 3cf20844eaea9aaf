"""Run history: every run's rows in a database (SQLite by default, any SQLAlchemy URL such as a team's
PostgreSQL), trends per variant and metric, change points across runs, and a gate against the last N runs.

Where it lives: ``$OPTBENCH_HISTORY`` (a file path or an SQLAlchemy URL; ``off`` disables it), else
``$XDG_DATA_HOME/optbench/history.sqlite``. ``optbench run --no-history`` opts one run out."""

from optbench.history.store import History, history_url, open_history

__all__ = ["History", "history_url", "open_history"]

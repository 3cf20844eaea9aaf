"""optbench: build, measure and check deep-learning inference variants from one YAML spec."""

__version__ = "0.1.0"


def load_results(run_dir):
    """The result rows of a run directory as a pandas DataFrame."""
    from optbench.store import load_results as _load

    return _load(run_dir)


__all__ = ["__version__", "load_results"]

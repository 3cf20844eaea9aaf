"""The experiment spec's typed models (pydantic) and their defaults. Reading a spec file and checking it against
what is installed lives in :mod:`optbench.specfile`."""

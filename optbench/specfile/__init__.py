"""A spec file read and checked: safe YAML into :mod:`optbench.spec`'s models, then checked against what is
installed and registered (backends, data sources, outputs, files); and the spec's JSON schema. Above
``optbench.spec``, ``optbench.backends``, ``optbench.data`` and ``optbench.outputs``, which import only the models."""

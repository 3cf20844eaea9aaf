"""``optbench deploy``: the serving configuration that meets a p99 bound at the highest QPS per device (or the
lowest energy per item, or the lowest p99), among the variants that pass every accuracy budget; the devices a
target QPS needs, the runner-up, the frontier and a deployable fragment (see docs/deploy.md)."""

"""Where a variant's drift comes from: the reference and the variant run side by side with their intermediate
tensors exposed (ONNX graphs) or hooked (torch modules), each node ranked by the error it introduces
(:mod:`optbench.explain.localize`); ``optbench explain RUN VARIANT`` and the report's section for failed or
marginal variants read it, and ``optbench tune`` seeds its search with it."""

"""wyoming-openwakeword 1.8.2 ``models/embedding_model.tflite`` (openWakeWord's speech embedding, a CNN after
Google's speech embedding), read as ``embeddings_proc`` reads it: signature serving_default, input ``input_1``
(N, 76, 32, 1) mel windows, output ``conv2d_19`` (N, 1, 1, 96): one 96-value embedding per window, which the wake
word models read 16 at a time. Batch on axis 0; judged as embeddings (cosine, nearest neighbours)."""

NEEDS = ["command:espeak-ng"]

OUTPUTS = {
    "conv2d_19": {"batch_axis": 0, "task": {"kind": "embedding", "top_k": 3}},
}

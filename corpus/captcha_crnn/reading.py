"""captcha-whisperer 0.1.0 ``captcha_crnn.onnx`` as its package reads it (``captcha_whisperer/recognizer.py``):
one output ``logits`` of shape (20 time steps, batch, 37 classes), time-major, so the batch is axis 1. Classes
0-35 are the characters 0-9, A-Z (``constants.LABELS``), class 36 (the last) is the CTC blank. Greedy CTC over
the argmax path reads the text."""

SLOW = True  # about 35-55 s: behind the slow marker (CI runs it)


ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

OUTPUTS = {
    "logits": {"batch_axis": 1, "task": {"kind": "ctc", "blank": 36, "charset": list(ALPHABET)}},
}

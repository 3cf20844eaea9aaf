"""ddddocr 1.6.1 ``common.onnx`` (the ``beta`` recogniser) as ``ddddocr/core/ocr_engine.py`` reads it: input
``input1`` [1, 1, 64, width], batch fixed at 1 by the graph; output ``387`` of shape (T, 1, 8210) with T = width/8,
time-major, so its batch is axis 1, although the graph declares it [1, seqlen]. ``_process_text_output`` takes
``output[:, 0, :]``, the argmax per step, merges repeats and drops class 0 (the blank, '' in ``CHARSET_BETA``)."""

SLOW = True
OUTPUTS = {
    "387": {"batch_axis": 1, "task": {"kind": "ctc", "blank": 0}},
}

"""basic-pitch 0.4.0 ``saved_models/icassp_2022/nmp`` (SavedModel, signature serving_default) as basic-pitch's
inference reads it: input ``input_2`` (N, 43844, 1) float32 audio at 22050 Hz; outputs by the signature's keys,
each (N, 172 frames, bins) with the batch on axis 0: ``note`` (88 piano keys) and ``onset`` (88) posteriors, turned
into notes where onsets reach onset_threshold 0.5 and frames frame_threshold 0.3 (``predict``'s defaults); ``contour``
(264, three bins a semitone) the pitch posteriorgram, judged by its drift."""

OUTPUTS = {
    "contour": {"batch_axis": 0, "task": None},
    "note": {"batch_axis": 0, "task": {"kind": "dense", "threshold": 0.3}},
    "onset": {"batch_axis": 0, "task": {"kind": "dense", "threshold": 0.5}},
}

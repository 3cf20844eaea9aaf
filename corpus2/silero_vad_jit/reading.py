"""fasr-vad-silero 0.5.8 ``asset/silero_vad.jit``: Silero VAD as TorchScript, read as fasr's ``SileroVAD._infer``
calls it: ``model(x, sample_rate)`` with x (N, 512) float32 at 16 kHz and the sample rate an int, returning the
speech probability (N, 1), batch on axis 0; a window is speech where it reaches 0.5 (fasr's threshold). The module
is stateful: it carries an RNN state and 64 samples of context from call to call, so each call is judged after
``reset_states()`` (``RESET``), the declaration its spec makes (``model.reset: reset_states``)."""

NEEDS = ["command:espeak-ng"]
RESET = "reset_states"

OUTPUTS = {
    "output": {"batch_axis": 0, "task": {"kind": "dense", "threshold": 0.5}},
}

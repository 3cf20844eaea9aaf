"""Speech windows for Silero VAD as TorchScript, cut as fasr-vad-silero 0.5.8's streaming detector cuts them.

``SileroVAD.push_chunk`` feeds the model windows of 512 samples at 16 kHz (32 ms), float32 in [-1, 1], one call
each (``self.model(audio_tensor, self.sample_rate)``); the module keeps state between calls (its RNN state and the
last 64 samples as context) until ``reset_states()``. The speech is spoken by espeak-ng in several voices with
silences between sentences, resampled to 16 kHz, with a little noise; items are windows drawn from it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

RATE, WINDOW = 16000, 512
SENTENCES = ["Voice activity detection tells speech from silence in every short window.",
             "Please call Stella and ask her to bring these things with her from the store.",
             "The train to the airport leaves from platform four in twenty minutes."]
VOICES = ["en", "en-us", "en+f3"]


def speak(text: str, voice: str, speed: int) -> np.ndarray:
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("silero_vad_jit's speech is spoken by espeak-ng: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True,
                       capture_output=True)
        rate, data = wavfile.read(wav)
    return resample_poly(data.astype(np.float32) / 32768.0, RATE, rate).astype(np.float32)


def windows(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``x``: (count, 512) float32 windows of the recording, in time order."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, text in enumerate(SENTENCES):
        parts.append(np.zeros(int(rng.uniform(0.3, 0.9) * RATE), np.float32))
        parts.append(0.7 * speak(text, VOICES[i % len(VOICES)], int(rng.integers(140, 180))))
    audio = np.concatenate(parts + [np.zeros(RATE // 2, np.float32)])
    audio = audio + rng.normal(0, 0.002, audio.shape).astype(np.float32)
    n = len(audio) // WINDOW
    if count > n:
        raise ValueError(f"the recording holds {n} windows, fewer than the {count} asked for")
    keep = np.sort(rng.choice(n, count, replace=False))
    return {"x": np.stack([audio[i * WINDOW:(i + 1) * WINDOW] for i in keep]).astype(np.float32)}

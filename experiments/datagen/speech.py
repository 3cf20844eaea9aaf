"""Speech-like audio for the silero-vad example, with the recurrent state that enters each chunk.

Sentences spoken by Debian's espeak-ng (several voices and speeds), separated by pauses over a little
background noise, resampled to 16 kHz and cut into 512-sample windows (silero's at 16 kHz), each with the 64 samples before it in front. The
model is stateful: each chunk's `state` is the one the fp32 model itself carries into it when the audio
is streamed from the start, so every item is a realistic (chunk, state) pair and items can be shuffled.

    python experiments/datagen/speech.py experiments/data/speech-16k.npz

writes the committed file (needs espeak-ng, and silero-vad for its model file).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SENTENCES = [
    "The train to the airport leaves from platform four in ten minutes.",
    "Please keep your ticket until the end of the journey.",
    "We measured the latency of every variant on the same machine.",
    "Turn left at the bridge and follow the river to the market.",
]
VOICES = ["en", "en-us", "en+f3", "en+m3"]
RATE = 16000
CHUNK = 512
KEEP = 320  # chunks kept (at random) in the committed file
CONTEXT = 64  # silero feeds each window with the last 64 samples of the previous one in front (576 in all)


def speak(text: str, voice: str, speed: int) -> np.ndarray:
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
        rate, data = wavfile.read(wav)
    audio = data.astype(np.float32) / 32768.0
    return resample_poly(audio, RATE, rate).astype(np.float32)


def stream(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = []
    for i, text in enumerate(SENTENCES):
        parts.append(np.zeros(int(rng.uniform(0.3, 1.2) * RATE), np.float32))
        parts.append(0.8 * speak(text, VOICES[i % len(VOICES)], int(rng.integers(140, 190))))
    parts.append(np.zeros(RATE // 2, np.float32))
    audio = np.concatenate(parts)
    audio += rng.normal(0, 0.003, audio.shape).astype(np.float32)
    return audio[: len(audio) // CHUNK * CHUNK]


def chunks_with_state(audio: np.ndarray, model: Path) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    inputs, states, probs = [], [], []
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), audio])
    for start in range(0, len(audio), CHUNK):
        chunk = padded[start : start + CONTEXT + CHUNK]
        inputs.append(chunk)
        states.append(state[:, 0])
        prob, state = sess.run(None, {"input": chunk[None], "state": state, "sr": np.array(RATE, np.int64)})
        probs.append(float(prob[0, 0]))
    print(f"{len(inputs)} chunks, {np.mean(np.array(probs) > 0.5):.0%} speech by the fp32 model")
    return {"input": np.stack(inputs), "state": np.stack(states).astype(np.float32)}


def main(out: str) -> None:
    import importlib.util

    root = Path(next(iter(importlib.util.find_spec("silero_vad").submodule_search_locations)))
    arrays = chunks_with_state(stream(), root / "data" / "silero_vad_16k_op15.onnx")
    keep = np.sort(np.random.default_rng(0).choice(len(arrays["input"]), KEEP, replace=False))  # a small file
    np.savez_compressed(out, **{k: v[keep] for k, v in arrays.items()})


if __name__ == "__main__":
    main(sys.argv[1])

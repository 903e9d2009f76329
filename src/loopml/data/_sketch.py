"""Mergeable summaries for profiles: a HyperLogLog sketch and a systematic sample.

Both are built per group of rows (on the writer threads) and merged in the groups'
order, and both are deterministic: the same rows give the same sketch and sample,
however the work was spread over threads.
"""

from __future__ import annotations

import math

import numpy as np

PRECISION = 16  # 2**16 registers: about 0.4% standard error, 64 KiB per column
_REGISTERS = 1 << PRECISION
_VALUE_BITS = 64 - PRECISION
_LOW_BITS = np.uint64((1 << _VALUE_BITS) - 1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 1 << 14


class HyperLogLog:
    """A distinct-count sketch over 64-bit hashes (Flajolet et al.; Ertl's estimator).

    Merging is a register-wise maximum, so the sketch of a union is the union of the
    sketches, in any order. Ertl's estimator ("New cardinality estimation algorithms
    for HyperLogLog sketches", 2017) needs no bias tables and is exact enough at small
    counts (a few values come out exact).
    """

    __slots__ = ("registers",)

    def __init__(self) -> None:
        self.registers = np.zeros(_REGISTERS, dtype=np.uint8)

    def add_values(self, values: np.ndarray) -> None:
        """Add fixed-width values (any 8-byte numpy array), hashed by their bits."""
        self._add(values.view(np.uint64), mix=True)

    def add_hashes(self, hashes: np.ndarray) -> None:
        """Add values by their 64-bit hashes (a uint64 array)."""
        self._add(hashes, mix=False)

    def _add(self, words: np.ndarray, *, mix: bool) -> None:
        # Slices small enough to stay in cache, each passed through in place: about
        # three times faster than whole-array numpy expressions.
        size = min(_CHUNK, len(words))
        hashes, scratch = np.empty(size, np.uint64), np.empty(size, np.uint64)
        floats, rank = np.empty(size, np.float64), np.empty(size, np.uint8)
        for start in range(0, len(words), _CHUNK):
            n = min(_CHUNK, len(words) - start)
            h, t, f, r = hashes[:n], scratch[:n], floats[:n], rank[:n]
            if mix:  # the splitmix64 finalizer: a bijection that spreads every bit
                np.add(words[start : start + n], _GOLDEN, out=h)
                for shift, multiplier in ((30, _MIX_1), (27, _MIX_2)):
                    np.right_shift(h, np.uint64(shift), out=t)
                    np.bitwise_xor(h, t, out=h)
                    np.multiply(h, multiplier, out=h)
                np.right_shift(h, np.uint64(31), out=t)
                np.bitwise_xor(h, t, out=h)
            else:
                h[...] = words[start : start + n]
            # The rank (1 + leading zeros of the low bits) from the float exponent: a
            # 50-bit integer converts to float64 exactly. Zero counts as one (a 2**-50
            # event), which keeps the rank in 1..50.
            np.bitwise_and(h, _LOW_BITS, out=t)
            np.bitwise_or(t, np.uint64(1), out=t)
            f[...] = t
            np.right_shift(f.view(np.uint64), np.uint64(52), out=t)
            np.subtract(np.uint8((1023 + _VALUE_BITS) % 256), t.astype(np.uint8), out=r)
            np.right_shift(h, np.uint64(_VALUE_BITS), out=t)
            np.maximum.at(self.registers, t, r)

    def merge(self, other: HyperLogLog) -> None:
        """Make this sketch that of the union of both."""
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> int:
        """The estimated number of distinct values added."""
        counts = np.bincount(self.registers, minlength=_VALUE_BITS + 2).astype(np.float64)
        m = float(_REGISTERS)
        z = m * _tau(1.0 - counts[_VALUE_BITS + 1] / m)
        for k in range(_VALUE_BITS, 0, -1):
            z = 0.5 * (z + counts[k])
        z += m * _sigma(counts[0] / m)
        if z == 0.0 or math.isinf(z):
            return 0
        return round(m * m / (2.0 * math.log(2.0)) / z)


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == previous:
            return z / 3.0


class SystematicSample:
    """Every ``stride``-th value of a stream, the stride doubling to bound the size.

    Holds all values while there are at most ``2 * size`` of them (so quantiles of a
    small column are exact), then between ``size`` and ``2 * size``.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.stride = 1
        self.seen = 0
        self._parts: list[np.ndarray] = []
        self._held = 0

    def add(self, values: np.ndarray) -> None:
        """Append the next values of the stream."""
        first = -self.seen % self.stride
        self.seen += len(values)
        taken = values[first :: self.stride].copy()  # not a view: the rows go away
        self._parts.append(taken)
        self._held += len(taken)
        while self._held > 2 * self.size:
            held = np.concatenate(self._parts)[::2]
            self._parts, self._held = [held], len(held)
            self.stride *= 2

    def values(self) -> np.ndarray:
        """The sample, in stream order."""
        return np.concatenate(self._parts) if self._parts else np.empty(0)


def quantiles(values: np.ndarray, probabilities: tuple[float, ...]) -> list[float]:
    """Quantiles with linear interpolation between order statistics, as DuckDB's
    ``quantile_cont`` computes them; NaN sorts last, as in DuckDB."""
    if not len(values):
        return []
    positions = [p * (len(values) - 1) for p in probabilities]
    ranks = sorted({math.floor(x) for x in positions} | {math.ceil(x) for x in positions})
    ordered = np.partition(values, ranks)
    result = []
    for position in positions:
        low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
        result.append(float(low + (high - low) * (position - math.floor(position))))
    return result

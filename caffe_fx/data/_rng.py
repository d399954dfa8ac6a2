"""The random streams Caffe's data layers draw from, reproduced draw for draw.

Used by the data feed (feed.py), which also takes its default seed from here: Caffe's
process-wide one (set_random_seed, called by pycaffe's caffe.set_random_seed and by the
solvers' random_seed).  Mirrors include/caffe/util/rng.hpp and
src/caffe/common.cpp (Caffe::RNG is boost::mt19937; caffe_rng_rand() one raw 32-bit
draw), boost's uniform_int (boost/random/uniform_int_distribution.hpp,
generate_uniform_int), and, for HDF5Data, glibc's rand() (random_r.c, TYPE_3, never
seeded: srand(1)) under libstdc++'s std::random_shuffle (bits/stl_algo.h).
"""
from __future__ import annotations

import os
from collections.abc import MutableSequence
from typing import Any

import numpy as np
import torch

_U32 = 0xFFFFFFFF

# Caffe::set_random_seed's seed, process-wide as Caffe's singleton; None until set, when
# each data layer seeds from /dev/urandom.
_SEED: list[int | None] = [None]


def set_random_seed(seed: int) -> None:
    """Caffe::set_random_seed: seeds the generator the fillers (and Dropout) draw from,
    and the random streams (crop, mirror, shuffle) of the data layers of nets made after."""
    torch.manual_seed(seed)
    _SEED[0] = int(seed)


def random_seed() -> int | None:
    """The seed set_random_seed() last set (None: never)."""
    return _SEED[0]


class MT19937:
    """boost::mt19937 seeded with a 32-bit unsigned seed (init_genrand): numpy's legacy
    seeding gives the very same state, so its raw draws are boost's."""

    def __init__(self, seed: int) -> None:
        state: Any = np.random.RandomState(seed & _U32).get_state(legacy=True)
        self._bits = np.random.MT19937()
        self._bits.state = {"bit_generator": "MT19937",
                            "state": {"key": state[1], "pos": state[2]}}

    def __call__(self) -> int:
        """One raw 32-bit draw, rng() in C++."""
        return int(self._bits.random_raw())

    @classmethod
    def unseeded(cls) -> MT19937:
        """Caffe without set_random_seed seeds from /dev/urandom (cluster_seedgen)."""
        return cls(int.from_bytes(os.urandom(4), "little"))


def uniform_int(rng: MT19937, low: int, high: int) -> int:
    """boost::uniform_int<>(low, high)(rng) for a 32-bit engine and a range below 2^32:
    the draw divided into buckets, redrawn when it falls past the last whole bucket."""
    span = high - low
    if span == 0:
        return low
    bucket = _U32 // (span + 1)
    if _U32 % (span + 1) == span:
        bucket += 1
    while True:
        result = rng() // bucket
        if result <= span:
            return low + result


def caffe_shuffle(items: MutableSequence[Any], rng: MT19937) -> None:
    """caffe::shuffle (rng.hpp): Fisher-Yates from the back, uniform_int(0, i)."""
    for i in range(len(items) - 1, 0, -1):
        j = uniform_int(rng, 0, i)
        items[i], items[j] = items[j], items[i]


class GlibcRand:
    """glibc's rand() as a process that never called srand() sees it (seed 1): the
    additive feedback generator r[i] = r[i-3] + r[i-31], the first 310 words dropped,
    each output r >> 1."""

    def __init__(self, seed: int = 1) -> None:
        r = [seed & _U32]
        for i in range(1, 31):
            # 16807 * r mod (2^31 - 1), computed as glibc does (Schrage, signed words)
            word = r[i - 1] - (1 << 32) if r[i - 1] >= 1 << 31 else r[i - 1]
            hi, lo = int(word / 127773), word - int(word / 127773) * 127773
            word = 16807 * lo - 2836 * hi
            if word < 0:
                word += 2147483647
            r.append(word & _U32)
        r += r[:3]  # r[31..33] = r[0..2]
        for i in range(34, 344):
            r.append((r[i - 31] + r[i - 3]) & _U32)
        self._r = r[-34:]

    def __call__(self) -> int:
        r = self._r
        value = (r[-31] + r[-3]) & _U32
        r.append(value)
        del r[0]
        return value >> 1


def random_shuffle(items: MutableSequence[Any], rand: GlibcRand) -> None:
    """std::random_shuffle(first, last) of libstdc++: each i from 1 swaps with
    rand() % (i + 1)."""
    for i in range(1, len(items)):
        j = rand() % (i + 1)
        if i != j:
            items[i], items[j] = items[j], items[i]

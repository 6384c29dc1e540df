#!/usr/bin/env python3
"""The golden orders of tests/train/batch_sampler_test.cpp.

They come from a model of std::seed_seq and std::mt19937_64 written from the C++ standard's
specification ([rand.util.seedseq], [rand.eng.mers]), not from any standard library, and of vitc's
Fisher-Yates shuffle (train/batch_sampler.cpp). The test checks that BatchSampler follows the
standard, so that every platform draws the same batches. Run: python3 tests/train/sampler_order.py
"""

M32 = (1 << 32) - 1
M64 = (1 << 64) - 1


def seed_seq(v, n):
    """std::seed_seq(v).generate() of n 32-bit words."""
    b = [0x8B8B8B8B] * n
    s = len(v)
    t = 11 if n >= 623 else 7 if n >= 68 else 5 if n >= 39 else 3 if n >= 7 else (n - 1) // 2
    p = (n - t) // 2
    q = p + t
    m = max(s + 1, n)

    def mix(x):
        return x ^ (x >> 27)

    for k in range(m):
        r1 = (1664525 * mix(b[k % n] ^ b[(k + p) % n] ^ b[(k - 1) % n])) & M32
        r2 = (r1 + (s if k == 0 else (k % n + v[k - 1]) if k <= s else k % n)) & M32
        b[(k + p) % n] = (b[(k + p) % n] + r1) & M32
        b[(k + q) % n] = (b[(k + q) % n] + r2) & M32
        b[k % n] = r2
    for k in range(m, m + n):
        r3 = (1566083941 * mix((b[k % n] + b[(k + p) % n] + b[(k - 1) % n]) & M32)) & M32
        r4 = (r3 - k % n) & M32
        b[(k + p) % n] ^= r3
        b[(k + q) % n] ^= r4
        b[k % n] = r4
    return b


class Mt19937_64:
    N, M, R = 312, 156, 31

    def __init__(self, seed_words):
        a = seed_seq(seed_words, 2 * self.N)  # two 32-bit words per 64-bit state word
        self.x = [a[2 * i] | (a[2 * i + 1] << 32) for i in range(self.N)]
        self.i = self.N

    def __call__(self):
        n = self.N
        if self.i >= n:
            lower = (1 << self.R) - 1
            for k in range(n):
                y = (self.x[k] & (M64 ^ lower)) | (self.x[(k + 1) % n] & lower)
                twist = 0xB5026F5AA96619E9 if y & 1 else 0
                self.x[k] = self.x[(k + self.M) % n] ^ (y >> 1) ^ twist
            self.i = 0
        z = self.x[self.i]
        self.i += 1
        z ^= (z >> 29) & 0x5555555555555555
        z ^= (z << 17) & 0x71D67FFFEDA60000
        z ^= (z << 37) & 0xFFF7EEE000000000
        z ^= z >> 43
        return z & M64


def epoch_order(count, seed, epoch):
    """BatchSampler(count images, seed).epochOrder(epoch)."""
    rng = Mt19937_64([seed & M32, seed >> 32, epoch & M32, epoch >> 32])
    order = list(range(count))
    for i in range(count, 1, -1):
        size = i  # a uniform draw from [0, i - 1] by rejection
        limit = M64 - M64 % size
        r = rng()
        while r >= limit:
            r = rng()
        j = r % size
        order[i - 1], order[j] = order[j], order[i - 1]
    return order


if __name__ == "__main__":
    print("10 images, seed 0, epoch 0:", epoch_order(10, 0, 0))
    print("12 images, seed 0xdeadbeefcafe, epoch 3:", epoch_order(12, 0xDEADBEEFCAFE, 3))

"""SHA-512 (FIPS 180-4) in plain MicroPython, for Ed25519 verification.

MicroPython's hashlib on the rp2 port has sha256 but no sha512. This one is slow (64-bit words are
big integers on a 32-bit board) but it only ever hashes R || A || M of a signature, where M is a
32-byte digest: 96 bytes, one block. See docs/trust.md.
"""

M64 = 0xFFFFFFFFFFFFFFFF

# the round constants (cube roots of the first 80 primes), 16 hex digits each, read one per round:
# a list of 80 of them would hold about 5 KiB of big integers for the whole digest
_KHEX = (
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc3956c25bf348b538"
    "59f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118d807aa98a303024212835b0145706fbe"
    "243185be4ee4b28c550c7dc3d5ffb4e272be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235"
    "c19bf174cf692694e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c65"
    "2de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5983e5152ee66dfab"
    "a831c66d2db43210b00327c898fb213fbf597fc7beef0ee4c6e00bf33da88fc2d5a79147930aa725"
    "06ca6351e003826f142929670a0e6e7027b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed"
    "53380d139d95b3df650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
    "a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30d192e819d6ef5218"
    "d69906245565a910f40e35855771202a106aa07032bbd1b819a4c116b8d2d0c81e376c085141ab53"
    "2748774cdf8eeb9934b0bcb5e19b48a8391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373"
    "682e6ff3d6b2b8a3748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532bca273eceea26619c"
    "d186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed17806f067aa72176fba0a637dc5a2c898a6"
    "113f9804bef90dae1b710b35131c471b28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc"
    "431d67c49c100d4c4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817"
)

_H0 = (0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
       0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179)


def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & M64


def _compress(h, block, w):
    """One 128-byte block into the state list `h`; `w` is a reusable 16-word schedule."""
    for i in range(16):
        w[i] = int.from_bytes(block[i * 8:i * 8 + 8], "big")
    a, b, c, d, e, f, g, hh = h
    for t in range(80):
        if t >= 16:
            w15 = w[(t - 15) & 15]
            w2 = w[(t - 2) & 15]
            s0 = _rotr(w15, 1) ^ _rotr(w15, 8) ^ (w15 >> 7)
            s1 = _rotr(w2, 19) ^ _rotr(w2, 61) ^ (w2 >> 6)
            w[t & 15] = (w[t & 15] + s0 + w[(t - 7) & 15] + s1) & M64
        k = int(_KHEX[t * 16:t * 16 + 16], 16)
        t1 = (hh + (_rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41)) + ((e & f) ^ (~e & g)) + k + w[t & 15]) & M64
        t2 = ((_rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))) & M64
        hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & M64, c, b, a, (t1 + t2) & M64
    for i, v in enumerate((a, b, c, d, e, f, g, hh)):
        h[i] = (h[i] + v) & M64


def sha512(data):
    """The 64-byte SHA-512 digest of `data` (bytes-like)."""
    h = list(_H0)
    w = [0] * 16
    n = len(data)
    full = n - n % 128
    mv = memoryview(data)
    for off in range(0, full, 128):
        _compress(h, mv[off:off + 128], w)
    tail = bytearray(mv[full:])
    tail.append(0x80)
    pad = (112 - len(tail)) % 128
    tail.extend(bytes(pad))
    tail.extend((n * 8).to_bytes(16, "big"))
    for off in range(0, len(tail), 128):
        _compress(h, tail[off:off + 128], w)
    out = bytearray()
    for v in h:
        out.extend(v.to_bytes(8, "big"))
    return bytes(out)

"""Ed25519 signature verification (RFC 8032, section 5.1.7) in plain MicroPython, for a Pico W.

Written for the board's budget:
- memory: a handful of 256-bit integers live at once (extended coordinates held in local variables,
  a 256-byte table of bit pairs); no lists or tuples are made inside the loops, and the big integers
  each step makes are small and short-lived, so the working heap stays a few KiB;
- time: one joint double-and-add over both scalars (Shamir's trick) with a three-entry table
  (B, -A, B-A), about 3,500 multiplications modulo p, plus one square root and one inversion;
  `feed` (the watchdog) is called every 32 bits;
- SHA-512: the caller hashes R || A || M (96 bytes when M is a 32-byte digest) with ota/sha512.py
  before it loads this module (ota/signature.py), and passes the hash in: the two modules' code never
  takes the heap together.

Strict decoding: wrong lengths, S >= L, a public key whose y is not below p, one with no square root,
and x = 0 with the sign bit set are all refused. The check is [S]B = R + [k]A without the cofactor,
comparing the encoding of [S]B - [k]A with R's bytes, as OpenSSL (and `cryptography`) do.
"""

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
D2 = (2 * D) % P
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
MUL_COUNT = 0  # multiplications modulo p of the last verify, for the benchmark's estimate


def decode_point(s):
    """(x, y) of a 32-byte point encoding, or None when it is not one (RFC 8032 5.1.3)."""
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    y2 = y * y % P
    u = (y2 - 1) % P
    v = (D * y2 + 1) % P
    v3 = v * v % P * v % P
    x = u * v3 % P * pow(u * v3 % P * v3 % P * v % P, (P - 5) // 8, P) % P
    vx2 = v * x % P * x % P
    if vx2 == u:
        pass
    elif vx2 == P - u:
        x = x * SQRT_M1 % P
    else:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return x, y


def _bits(s_bytes, k_bytes):
    """Per bit i (0..255): bit i of S plus twice bit i of k, in a bytearray."""
    out = bytearray(256)
    for i in range(32):
        a = s_bytes[i]
        b = k_bytes[i]
        for j in range(8):
            out[i * 8 + j] = ((a >> j) & 1) | (((b >> j) & 1) << 1)
    return out


def _cached(x, y, z, t):
    """A point prepared for addition: (Y-X, Y+X, 2d*T, 2Z)."""
    return (y - x) % P, (y + x) % P, D2 * t % P, 2 * z % P


def verify(public_key, signature, h, feed=None):
    """True when `signature` (64 bytes) is a valid Ed25519 signature under `public_key` (32 bytes) of
    the message M whose challenge hash `h` is: SHA-512(R || A || M), R the signature's first 32 bytes
    and A the key. `feed` is called during the long arithmetic (the watchdog)."""
    global MUL_COUNT
    if len(public_key) != 32 or len(signature) != 64:
        return False
    r_bytes = bytes(signature[:32])
    s_bytes = bytes(signature[32:])
    s = int.from_bytes(s_bytes, "little")
    if s >= L:
        return False
    a = decode_point(public_key)
    if a is None:
        return False
    if len(h) != 64:
        return False
    k = int.from_bytes(h, "little") % L
    if feed:
        feed()
    bits = _bits(s_bytes, k.to_bytes(32, "little"))
    s = s_bytes = k = None  # each big integer let go once used: the loop's working heap is the table's
    ax, ay = P - a[0], a[1]  # -A
    at = ax * ay % P
    # table: 1 -> B, 2 -> -A, 3 -> B + (-A)
    b0, b1, b2, b3 = _cached(BX, BY, 1, BX * BY % P)
    n0, n1, n2, n3 = _cached(ax, ay, 1, at)
    # B + (-A), by the addition formula of the loop with Z1 = 1
    pa = (ay - ax) * b0 % P
    pb = (ay + ax) * b1 % P
    pc = at * b2 % P
    pd = b3
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    m0, m1, m2, m3 = _cached(e * f % P, g * h % P, f * g % P, e * h % P)
    a = ax = ay = at = pa = pb = pc = pd = e = f = g = h = None
    count = 30
    # the sum starts at the neutral element (0, 1, 1, 0)
    x, y, z, t = 0, 1, 1, 0
    started = False
    i = 255
    while i >= 0:
        sel = bits[i]
        if started:
            # doubling (dbl-2008-hwcd, a = -1); T only when an addition follows
            pa = x * x % P
            pb = y * y % P
            pc = 2 * z * z % P
            h = pa + pb
            e = h - (x + y) * (x + y) % P
            g = pa - pb
            f = pc + g
            pa = pb = pc = None
            x = e * f % P
            y = g * h % P
            z = f * g % P
            count += 6
            if sel:
                t = e * h % P
                count += 1
        if sel:
            if sel == 1:
                q0, q1, q2, q3 = b0, b1, b2, b3
            elif sel == 2:
                q0, q1, q2, q3 = n0, n1, n2, n3
            else:
                q0, q1, q2, q3 = m0, m1, m2, m3
            # addition with a cached point (add-2008-hwcd-3, a = -1)
            pa = (y - x) * q0 % P
            pb = (y + x) * q1 % P
            pc = t * q2 % P
            pd = z * q3 % P
            e = pb - pa
            f = pd - pc
            g = pd + pc
            h = pb + pa
            pa = pb = pc = pd = None
            x = e * f % P
            y = g * h % P
            z = f * g % P
            t = e * h % P
            count += 8
            started = True
        if feed and i & 31 == 0:
            feed()
        i -= 1
    zi = pow(z, P - 2, P)
    x = x * zi % P
    y = y * zi % P
    MUL_COUNT = count + 3
    enc = y | ((x & 1) << 255)
    return enc.to_bytes(32, "little") == r_bytes

#!/usr/bin/env python3
"""Exact reference for kernels/math/low_precision.h (bf16, fp8 E4M3, fp8 E5M2).

Every value comes from the formats' definitions in exact rational arithmetic (Fraction); nothing
here uses a float8 or bfloat16 implementation (torch 1.13 has no float8; its bf16 cast is used
only as a second opinion on this script's own bf16 answers). The script:
  1. decodes every code of each format from the definition and compares with the tool's
     float (bit for bit; -0 stays -0, inf stays inf, NaN stays NaN);
  2. builds inputs around every pair of adjacent representable values of each format: both
     values, their midpoint (a tie), and the floats just below and just above the midpoint; and
     overflow (the midpoint past the largest value, beyond it, FLT_MAX, inf), float subnormals,
     +-0, NaNs; all of them with both signs;
  3. rounds each input to each format by nearest-value search with ties to the even code, checks
     that against what the construction in 2 implies (self-check), and compares with the tool's
     four conversions (bf16, e4m3 saturating, e5m2, e5m2 saturating) for EVERY input.
Exit status 0 when everything matches; the first mismatches are printed otherwise.

Usage: low_precision_reference.py TOOL      (ctest kernels.low_precision_reference)
       low_precision_reference.py           (self-checks of this script only)
"""
import bisect
import struct
import subprocess
import sys
from fractions import Fraction

UNIT = 2**149  # every float32 is an integer multiple of 2^-149: exact integer keys for searches


def f32_from_bits(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def f32_bits_exact(q):
    """Bits of the non-negative float32 equal to Fraction q, or None if q is not a float32."""
    try:
        d = float(q)
        bits = struct.unpack("<I", struct.pack("<f", d))[0]
    except OverflowError:
        return None
    return bits if Fraction(f32_from_bits(bits)) == q else None


class Format:
    """A binary float format from its definition.

    ieee: exponent all ones is inf (mantissa 0) or NaN (bf16, E5M2); otherwise (E4M3, OCP
    e4m3fn) only S.1111.111 is NaN and there is no inf. overflow: 'inf' or 'saturate'.
    """

    def __init__(self, name, exp_bits, man_bits, bias, ieee, overflow):
        self.name, self.e, self.m, self.bias = name, exp_bits, man_bits, bias
        self.ieee, self.overflow = ieee, overflow
        self.sign_bit = 1 << (exp_bits + man_bits)
        self.nan_mag = None if ieee else self.sign_bit - 1
        self.inf_mag = ((1 << exp_bits) - 1) << man_bits if ieee else None
        self.max_mag = (self.inf_mag - 1) if ieee else self.nan_mag - 1
        # Finite non-negative values by magnitude code, then one sentinel: the next value with an
        # unbounded exponent (reaching it is overflow; its code's parity decides ties with max).
        self.values = [self.unbounded(c) for c in range(self.max_mag + 2)]
        self.keys = [v * UNIT for v in self.values]
        assert all(k.denominator == 1 for k in self.keys)
        self.keys = [int(k) for k in self.keys]
        assert self.keys == sorted(self.keys) and len(set(self.keys)) == len(self.keys)

    def unbounded(self, mag):
        exp, man = mag >> self.m, mag & ((1 << self.m) - 1)
        if exp == 0:  # subnormal
            return Fraction(man, 2**self.m) * Fraction(2) ** (1 - self.bias)
        return (1 + Fraction(man, 2**self.m)) * Fraction(2) ** (exp - self.bias)

    def decode(self, code):
        """'nan', ('inf', sign) or (sign, Fraction magnitude)."""
        sign, mag = code // self.sign_bit, code % self.sign_bit
        if self.ieee and (mag >> self.m) == (1 << self.e) - 1:
            return ("inf", sign) if mag == self.inf_mag else "nan"
        if not self.ieee and mag == self.nan_mag:
            return "nan"
        return (sign, self.unbounded(mag))

    def round(self, x):
        """Expected code for input x: 'nan', ('inf', sign) or (sign, Fraction magnitude)."""
        if x == "nan":
            return "nan"
        sign, a = x[1], x[0]
        if a == "inf":
            return self.overflow_code(sign)
        key = a * UNIT
        assert key.denominator == 1
        key = int(key)
        i = bisect.bisect_left(self.keys, key)
        if i == len(self.keys):
            return self.overflow_code(sign)
        if self.keys[i] == key:
            pick = i
        else:
            lo, hi = i - 1, i
            d_lo, d_hi = key - self.keys[lo], self.keys[hi] - key
            pick = lo if d_lo < d_hi else hi if d_hi < d_lo else (lo if lo % 2 == 0 else hi)
        if pick == self.max_mag + 1:
            return self.overflow_code(sign)
        return sign * self.sign_bit + pick

    def overflow_code(self, sign):
        mag = self.inf_mag if self.overflow == "inf" else self.max_mag
        return sign * self.sign_bit + mag


BF16 = Format("bf16", 8, 7, 127, ieee=True, overflow="inf")
E4M3 = Format("e4m3", 4, 3, 7, ieee=False, overflow="saturate")
E5M2 = Format("e5m2", 5, 2, 15, ieee=True, overflow="inf")
E5M2_SAT = Format("e5m2_sat", 5, 2, 15, ieee=True, overflow="saturate")
ENCODERS = [BF16, E4M3, E5M2, E5M2_SAT]  # the tool's output columns


def is_nan_code(fmt, code):
    return fmt.decode(code) == "nan"


def input_value(bits):
    """A float32 input as the reference sees it: 'nan' or (Fraction magnitude | 'inf', sign)."""
    sign, mag = bits >> 31, bits & 0x7FFFFFFF
    if mag > 0x7F800000:
        return "nan"
    if mag == 0x7F800000:
        return ("inf", sign)
    return (Fraction(f32_from_bits(mag)), sign)


def build_inputs():
    """Float32 bit patterns to test, each with the code the construction implies for its own
    format (checked against Format.round, so the search and the construction agree)."""
    cases = {}  # bits -> list of (format, expected code)

    def add(bits, fmt=None, code=None):
        cases.setdefault(bits, [])
        if fmt is not None:
            cases[bits].append((fmt, code))

    for fmt in (BF16, E4M3, E5M2):
        v = fmt.values
        for lo in range(len(v) - 1):
            hi = lo + 1
            lo_code = lo
            hi_code = hi if hi <= fmt.max_mag else fmt.overflow_code(0)
            for q, code in ((v[lo], lo_code), (v[hi], hi_code)):
                b = f32_bits_exact(q)
                if b is not None:
                    add(b, fmt, code)
            mid = (v[lo] + v[hi]) / 2
            b = f32_bits_exact(mid)
            assert b is not None, (fmt.name, lo)  # every midpoint here is a float32
            even = lo_code if lo % 2 == 0 else hi_code
            add(b, fmt, even)
            add(b - 1, fmt, lo_code)  # just below the midpoint (float32 is much finer)
            add(b + 1, fmt, hi_code)  # just above
        # Beyond the sentinel, up to float's largest finite value and inf.
        add(0x7F7FFFFF, fmt, fmt.overflow_code(0))
        add(0x7F800000, fmt, fmt.overflow_code(0))
    # Float subnormals and zero: far below every format's smallest subnormal's half.
    for b in (0x00000000, 0x00000001, 0x00000002, 0x00400000, 0x007FFFFF, 0x00800000):
        add(b)
    # NaNs: quiet, signalling, payloads.
    for b in (0x7FC00000, 0x7F800001, 0x7FBFFFFF, 0x7FFFFFFF, 0x7FC00001):
        add(b)
    # Both signs of everything.
    for b in list(cases):
        add(b | 0x80000000)
    return cases


def self_check():
    assert E4M3.decode(0x7E) == (0, 448) and E4M3.decode(0xFE) == (1, 448)
    assert E4M3.decode(0x78) == (0, 256)  # exponent 15 is finite in e4m3fn
    assert E4M3.decode(0x7F) == "nan" and E4M3.decode(0xFF) == "nan"
    assert E4M3.decode(0x01) == (0, Fraction(1, 2**9)) and E4M3.decode(0x08) == (0, Fraction(1, 64))
    assert E4M3.max_mag == 0x7E and E4M3.values[-1] == 480  # the sentinel: 1.111b * 2^8
    assert E5M2.decode(0x7B) == (0, 57344) and E5M2.decode(0x7C) == ("inf", 0)
    assert E5M2.decode(0x7D) == "nan" and E5M2.decode(0x01) == (0, Fraction(1, 2**16))
    assert E5M2.values[-1] == 65536
    assert BF16.decode(0x3F80) == (0, 1) and BF16.decode(0x0001) == (0, Fraction(1, 2**133))
    assert BF16.decode(0x7F7F) == (0, (2 - Fraction(1, 128)) * Fraction(2) ** 127)
    assert BF16.decode(0xFF80) == ("inf", 1)
    # Ties, overflow thresholds and saturation by hand.
    assert E4M3.round((Fraction(464), 0)) == 0x7E  # tie 448|480 -> even 448
    assert E4M3.round((Fraction(1e30), 1)) == 0xFE and E4M3.round(("inf", 0)) == 0x7E
    assert E4M3.round((Fraction(17, 2**13), 0)) == 0x01  # 1.0625 * 2^-9 -> the smallest subnormal
    assert E4M3.round((Fraction(3, 2**10), 0)) == 0x02  # 1.5 * 2^-9: tie -> even (2)
    assert E4M3.round((Fraction(1, 2**10), 1)) == 0x80  # half the smallest subnormal -> -0
    assert E5M2.round((Fraction(61440), 0)) == 0x7C  # tie 57344|65536 -> 65536 = inf
    assert E5M2.round((Fraction(61439), 0)) == 0x7B
    assert E5M2_SAT.round((Fraction(61440), 1)) == 0xFB and E5M2_SAT.round(("inf", 0)) == 0x7B
    assert BF16.round((Fraction(1) + Fraction(1, 256), 0)) == 0x3F80  # tie -> even
    assert BF16.round((Fraction(1) + Fraction(3, 256), 0)) == 0x3F82
    # The construction of build_inputs agrees with the nearest-value search.
    cases = build_inputs()
    for bits, expected in cases.items():
        x = input_value(bits)
        for fmt, code in expected:
            got = fmt.round(x)
            assert got == code, (fmt.name, hex(bits), got, code)
    # A second opinion on bf16 from PyTorch's float -> bfloat16 cast, where it is available.
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        bits = sorted(cases)
        t = torch.tensor([b - (1 << 32) if b >= 1 << 31 else b for b in bits], dtype=torch.int32)
        tb = t.view(torch.float32).to(torch.bfloat16).view(torch.int16).tolist()
        for b, code in zip(bits, tb):
            want = BF16.round(input_value(b))
            if want == "nan":
                continue
            assert code & 0xFFFF == want, (hex(b), hex(code & 0xFFFF), hex(want))
    return cases


def run_tool(tool, cases):
    failures = []
    # Decoding every code.
    out = subprocess.run([tool, "decode"], check=True, capture_output=True, text=True).stdout
    formats = {"bf16": BF16, "e4m3": E4M3, "e5m2": E5M2}
    decoded = 0
    for line in out.splitlines():
        name, code, fbits = line.split()
        fmt, code, fbits = formats[name], int(code, 16), int(fbits, 16)
        want = fmt.decode(code)
        if want == "nan":
            ok = (fbits & 0x7FFFFFFF) > 0x7F800000
        elif want[0] == "inf":
            ok = fbits == (want[1] << 31 | 0x7F800000)
        else:
            ok = fbits == (want[0] << 31 | f32_bits_exact(want[1]))
        decoded += 1
        if not ok:
            failures.append(f"decode {name} {code:#x}: got float bits {fbits:#010x}, want {want}")
    # Encoding every input with every conversion.
    bits = sorted(cases)
    stdin = "".join(f"{b:08x}\n" for b in bits)
    out = subprocess.run([tool, "encode"], input=stdin, check=True, capture_output=True,
                         text=True).stdout.splitlines()
    if len(out) != len(bits):
        failures.append(f"encode: {len(out)} lines for {len(bits)} inputs")
        out = []
    for b, line in zip(bits, out):
        x = input_value(b)
        for fmt, got in zip(ENCODERS, (int(c, 16) for c in line.split())):
            want = fmt.round(x)
            ok = is_nan_code(fmt, got) if want == "nan" else got == want
            if not ok:
                failures.append(f"encode {fmt.name} of float bits {b:#010x}: got {got:#x}, "
                                f"want {want if want == 'nan' else hex(want)}")
    return decoded, len(bits), failures


def main():
    cases = self_check()
    print(f"self-check: {len(cases)} inputs, search == construction == torch bf16: ok")
    if len(sys.argv) < 2:
        return 0
    decoded, encoded, failures = run_tool(sys.argv[1], cases)
    for f in failures[:20]:
        print("MISMATCH", f)
    print(f"{decoded} codes decoded, {encoded} inputs x {len(ENCODERS)} conversions: "
          f"{len(failures)} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

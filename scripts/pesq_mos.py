#!/usr/bin/env python3
"""PESQ MOS-LQO (ITU-T P.862, PyPI `pesq`) of a degraded recording against its reference.

Usage: pesq_mos.py REFERENCE.wav DEGRADED.wav wb|nb

Both files: 16-bit PCM mono, the same rate (16 kHz for wb, 8 kHz for nb), already aligned
(`chaincall bench audio` aligns them by cross-correlation). Prints the MOS-LQO; exits non-zero
with the reason on stderr when PESQ cannot score (no utterance found, wrong rate).
"""
import sys
import wave

import numpy as np
from pesq import pesq


def read(path):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit(f"{path}: need 16-bit mono PCM")
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return w.getframerate(), samples.astype(np.float32)


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in ("wb", "nb"):
        sys.exit(__doc__)
    rate, ref = read(sys.argv[1])
    rate_deg, deg = read(sys.argv[2])
    if rate != rate_deg:
        sys.exit(f"rates differ: {rate} and {rate_deg}")
    try:
        print(f"{pesq(rate, ref, deg, sys.argv[3]):.4f}")
    except Exception as e:  # the pesq package raises its own types for unscorable input
        sys.exit(f"PESQ: {e}")


main()

"""libsrtp (via pylibsrtp) as the far end of chaincall-srtp's interop test.

Reads commands on stdin, one per line, answers one line each on stdout:
  session <RFC profile name> <master key||salt hex>  -> OK   (fresh inbound and outbound sessions)
  rtp_protect <hex> | rtcp_protect <hex>              -> OK <hex> | ERR <reason>
  rtp_unprotect <hex> | rtcp_unprotect <hex>          -> OK <hex> | ERR <reason>
"""

import sys

from pylibsrtp import Error, Policy, Session

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}


def main():
    tx = rx = None
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd = parts[0]
        try:
            if cmd == "session":
                profile, key = PROFILES[parts[1]], bytes.fromhex(parts[2])
                tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
                rx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
                print("OK", flush=True)
                continue
            data = bytes.fromhex(parts[1])
            out = {
                "rtp_protect": lambda: tx.protect(data),
                "rtcp_protect": lambda: tx.protect_rtcp(data),
                "rtp_unprotect": lambda: rx.unprotect(data),
                "rtcp_unprotect": lambda: rx.unprotect_rtcp(data),
            }[cmd]()
            print("OK", bytes(out).hex(), flush=True)
        except Error as e:
            print("ERR", str(e).replace(" ", "_"), flush=True)


if __name__ == "__main__":
    main()

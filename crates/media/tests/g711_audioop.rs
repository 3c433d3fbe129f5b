//! G.711 against Python's `audioop` (CPython's C implementation of the Sun reference code):
//! every one of the 65,536 16-bit inputs encoded, and every one of the 256 codes decoded, compared
//! byte for byte, for µ-law and A-law.

use std::process::Command;

use chaincall_media::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};

const SCRIPT: &str = r#"
import sys, struct, warnings
warnings.simplefilter("ignore")
import audioop
pcm = struct.pack("<65536h", *range(-32768, 32768))
codes = bytes(range(256))
out = sys.stdout.buffer
out.write(audioop.lin2ulaw(pcm, 2))
out.write(audioop.lin2alaw(pcm, 2))
out.write(audioop.ulaw2lin(codes, 2))
out.write(audioop.alaw2lin(codes, 2))
"#;

#[test]
fn g711_matches_python_audioop_for_every_input_and_code() {
    // audioop left the standard library in Python 3.13.
    let Some(python) = chaincall_testkit::peer("python3").and_then(|python| {
        chaincall_testkit::python_with(
            python,
            "audioop",
            "python3 with the audioop module (Python <= 3.12)",
        )
    }) else {
        return;
    };
    let b = chaincall_testkit::run_ok(Command::new(&python).args(["-c", SCRIPT]), "audioop script");
    assert_eq!(b.len(), 65536 * 2 + 512 * 2);
    let (ulaw, rest) = b.split_at(65536);
    let (alaw, rest) = rest.split_at(65536);
    let (ulaw_lin, alaw_lin) = rest.split_at(512);

    for (i, s) in (i16::MIN..=i16::MAX).enumerate() {
        assert_eq!(ulaw_encode(s), ulaw[i], "µ-law encode of {s}");
        assert_eq!(alaw_encode(s), alaw[i], "A-law encode of {s}");
    }
    for code in 0..=255u8 {
        let c = usize::from(code);
        let theirs_u = i16::from_le_bytes([ulaw_lin[2 * c], ulaw_lin[2 * c + 1]]);
        let theirs_a = i16::from_le_bytes([alaw_lin[2 * c], alaw_lin[2 * c + 1]]);
        assert_eq!(ulaw_decode(code), theirs_u, "µ-law code {code:#04x}");
        assert_eq!(alaw_decode(code), theirs_a, "A-law code {code:#04x}");
    }
}

//! Interop with `secsipidx` (Debian `secsipidx`, the asipto STIR/SHAKEN tool whose library is
//! Kamailio's `secsipid` module), both ways, with the real binary and a public key in place of a
//! certificate: it verifies the PASSporTs we sign, and we verify the ones it signs with our key.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chaincall_identity::{IdentityKey, Overwrite, Secret, write_secret_file};
use chaincall_passport::*;
use common::*;
use p256::pkcs8::EncodePrivateKey;

fn secsipidx() -> Option<PathBuf> {
    chaincall_testkit::peer("secsipidx")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// secsipidx's check of an Identity header value with a PEM public key; true when it says ok.
fn secsipidx_accepts(bin: &Path, dir: &Path, value: &str, key: &IdentityKey) -> bool {
    let identity = dir.join("identity.txt");
    let pubkey = dir.join("pub.pem");
    std::fs::write(&identity, value).unwrap();
    std::fs::write(&pubkey, public_key_pem(&key.public())).unwrap();
    let out = Command::new(bin)
        .arg("-check")
        .arg("-fidentity")
        .arg(&identity)
        .arg("-fpubkey")
        .arg(&pubkey)
        // Its default window is 0 s (a token expires one second after iat); ours is 60 s.
        .args(["-expire", "60"])
        .output()
        .expect("secsipidx runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = out.status.success() && stdout.lines().any(|l| l == "ok");
    assert!(
        ok || stdout.contains("not-ok"),
        "secsipidx neither accepted nor refused: {}",
        chaincall_testkit::describe(&out)
    );
    ok
}

/// Our identity key as a PKCS#8 PEM private key file (0600), the form secsipidx signs with.
fn write_private_key(dir: &Path, key: &IdentityKey) -> PathBuf {
    // The DER document zeroizes itself; the base64 and PEM copies are Secrets, and the PEM is
    // allocated once at full size so growing it leaves no stray copy behind.
    let der = key.as_p256().to_pkcs8_der().expect("P-256 keys encode");
    let body = Secret::new(STANDARD.encode(der.as_bytes()));
    let mut pem = Secret::new(String::with_capacity(body.len() * 2 + 64));
    pem.push_str("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let path = dir.join("key.pem");
    write_secret_file(&path, pem.as_bytes(), Overwrite::Replace).unwrap();
    path
}

#[test]
fn secsipidx_verifies_our_passports_with_the_on_chain_public_key() {
    let Some(bin) = secsipidx() else { return };
    let dir = tempfile::tempdir().unwrap();
    let value = signed(unix_now());
    assert!(
        secsipidx_accepts(&bin, dir.path(), &value, &alice()),
        "secsipidx refused {value}"
    );
    // It refuses the same header under another key, and with a claim changed.
    assert!(!secsipidx_accepts(&bin, dir.path(), &value, &key(2)));
    let (h, p, s, params) = parts(&value);
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(&p).unwrap()).unwrap();
    let forged = URL_SAFE_NO_PAD.encode(payload.replace("15551230002", "15551230003"));
    let tampered = format!("{h}.{forged}.{s}{params}");
    assert!(!secsipidx_accepts(&bin, dir.path(), &tampered, &alice()));
}

/// secsipidx signs a chaincall PASSporT (our header and claims) with a key we generated; we
/// verify it. Go's ECDSA makes high-S signatures about half the time: both kinds verify, and the
/// twin of each accepted token is a replay.
#[test]
fn we_verify_passports_secsipidx_signs_including_high_s_ones() {
    let Some(bin) = secsipidx() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key_file = write_private_key(dir.path(), &alice());
    let header_file = dir.path().join("header.json");
    std::fs::write(&header_file, our_header()).unwrap();
    let payload_file = dir.path().join("payload.json");
    let (mut high, mut low) = (0, 0);
    // Until both kinds were seen; 64 signatures miss one kind with probability 2^-63.
    for round in 0..64u32 {
        if high > 0 && low > 0 {
            break;
        }
        let now = unix_now();
        let mut claims = claims(now);
        claims.origid = format!("00000000-0000-4000-8000-{round:012}");
        std::fs::write(&payload_file, claims.to_canonical_json().unwrap()).unwrap();
        let out = Command::new(&bin)
            .arg("-sign")
            .arg("-fprvkey")
            .arg(&key_file)
            .arg("-fheader")
            .arg(&header_file)
            .arg("-fpayload")
            .arg(&payload_file)
            .output()
            .expect("secsipidx runs");
        chaincall_testkit::assert_success(&out, "secsipidx -sign");
        let jws = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let value = with_info(&jws);
        let mut verifier = verifier();
        let verified = check(&mut verifier, &value, &alice(), now)
            .unwrap_or_else(|e| panic!("refused secsipidx's {value}: {e}"));
        assert_eq!(verified.origid, claims.origid);
        let (h, p, s, params) = parts(&value);
        if is_high_s(&s) {
            high += 1;
        } else {
            low += 1;
        }
        let twin_value = format!("{h}.{p}.{}{params}", twin(&s));
        assert_eq!(
            check(&mut verifier, &twin_value, &alice(), now),
            Err(PassportError::Replayed)
        );
    }
    assert!(
        high > 0 && low > 0,
        "saw {high} high-S and {low} low-S signatures"
    );
}

/// What secsipidx makes by default is a SHAKEN PASSporT (`ppt=shaken`, certificate
/// attestation): not ours, refused as an unsupported extension (428).
#[test]
fn a_shaken_passport_from_secsipidx_is_428() {
    let Some(bin) = secsipidx() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key_file = write_private_key(dir.path(), &alice());
    let out = Command::new(&bin)
        .arg("-sign-full")
        .arg("-fprvkey")
        .arg(&key_file)
        .args(["-orig-tn", "15551230001", "-dest-tn", "15551230002"])
        .args(["-x5u", &locator().to_uri()])
        .output()
        .expect("secsipidx runs");
    chaincall_testkit::assert_success(&out, "secsipidx -sign-full");
    let value = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(value.ends_with(";ppt=shaken"), "{value}");
    let err = IdentityHeader::parse(&value).unwrap_err();
    assert_eq!(err, PassportError::UnsupportedPpt("shaken".into()));
    assert_eq!(err.status(), USE_IDENTITY_HEADER);
}

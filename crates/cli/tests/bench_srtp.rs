//! `chaincall bench srtp --json`: one object per profile with our and libsrtp's packets/s.

use std::process::Command;

#[test]
fn bench_srtp_json_lists_every_profile_with_libsrtp() {
    let Some(python) = chaincall_testkit::python() else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_chaincall"))
        .args([
            "bench",
            "srtp",
            "--json",
            "--packets",
            "3000",
            "--rounds",
            "1",
        ])
        .env("CHAINCALL_PYTHON", &python)
        .output()
        .expect("run chaincall");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let list = list.as_array().expect("a JSON list");
    let names: Vec<&str> = list
        .iter()
        .map(|o| o["profile"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "AES_CM_128_HMAC_SHA1_80",
            "AES_CM_128_HMAC_SHA1_32",
            "AEAD_AES_128_GCM",
            "AEAD_AES_256_GCM"
        ]
    );
    for o in list {
        for field in [
            "ours_protect_pps",
            "ours_unprotect_pps",
            "libsrtp_protect_pps",
            "libsrtp_unprotect_pps",
        ] {
            assert!(o[field].as_f64().is_some_and(|v| v > 0.0), "{field} in {o}");
        }
    }
}

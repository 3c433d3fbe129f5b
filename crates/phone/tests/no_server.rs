//! The phone library links the wallet server's client and wire types, not the server: an app that
//! embeds `chaincall-phone` carries no HTTP server (axum, hyper's server side), no database (sqlx)
//! and no SMS gateway client. `chaincall-wallet`'s `server` feature brings those; the phone turns it
//! off.

use std::process::Command;

/// The packages `cargo tree` lists under `package`'s normal (non-dev, non-build) dependencies, each
/// as `(name, enabled features)`.
fn normal_deps(package: &str) -> Vec<(String, Vec<String>)> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--package",
            package,
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p} [{f}]",
            "--locked",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?.to_owned();
            let features = line
                .rsplit_once('[')
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(list, _)| {
                    list.split(',')
                        .filter(|f| !f.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Some((name, features))
        })
        .collect()
}

/// What makes a server: the crates only the wallet server needs, and hyper's server feature.
fn server_parts(deps: &[(String, Vec<String>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, features) in deps {
        if ["axum", "axum-core", "sqlx", "sqlx-core"].contains(&name.as_str()) {
            found.push(name.clone());
        }
        if name == "hyper" && features.iter().any(|f| f == "server") {
            found.push("hyper/server".to_owned());
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_phone_links_the_wallet_client_but_no_server() {
    let phone = normal_deps("chaincall-phone");
    // The output was understood: the wallet client and the HTTP client it uses are there.
    for needed in ["chaincall-wallet", "reqwest"] {
        assert!(
            phone.iter().any(|(name, _)| name == needed),
            "chaincall-phone lacks {needed}: {phone:?}"
        );
    }
    assert_eq!(
        server_parts(&phone),
        Vec::<String>::new(),
        "chaincall-phone links server parts"
    );

    // The check sees them where they are: the wallet crate with its default `server` feature.
    let server = server_parts(&normal_deps("chaincall-wallet"));
    for part in ["axum", "hyper/server", "sqlx"] {
        assert!(
            server.iter().any(|p| p == part),
            "the wallet server lacks {part}: {server:?}"
        );
    }
}

//! The shipping `chaincall` carries no benchmark aid: `chaincall bench …` and its dependencies
//! (`chaincall-bench`, and through it `chaincall-libsrtp-ffi`, which dlopens a Python extension)
//! come only with the `bench` feature.

use std::process::Command;

/// The packages `cargo tree` lists under `chaincall`'s normal (non-dev, non-build) dependencies,
/// with the given extra arguments.
fn normal_deps(extra: &[&str]) -> Vec<String> {
    let out = chaincall_testkit::run_ok(
        Command::new(env!("CARGO"))
            .args([
                "tree",
                "--package",
                "chaincall",
                "--edges",
                "normal",
                "--prefix",
                "none",
                "--format",
                "{p}",
                "--locked",
                "--offline",
            ])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        "cargo tree",
    );
    String::from_utf8(out)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn default_chaincall_does_not_depend_on_libsrtp_ffi() {
    let default = normal_deps(&[]);
    assert!(
        default.iter().any(|p| p == "chaincall-sipd"),
        "cargo tree output not understood: {default:?}"
    );
    for aid in ["chaincall-libsrtp-ffi", "chaincall-bench"] {
        assert!(
            !default.iter().any(|p| p == aid),
            "the default chaincall depends on {aid}"
        );
    }
    // The check sees them when they are there.
    let bench = normal_deps(&["--features", "bench"]);
    for aid in ["chaincall-libsrtp-ffi", "chaincall-bench"] {
        assert!(
            bench.iter().any(|p| p == aid),
            "chaincall --features bench lacks {aid}: {bench:?}"
        );
    }
}

#[test]
fn help_lists_bench_only_with_the_feature() {
    let out = Command::new(env!("CARGO_BIN_EXE_chaincall"))
        .arg("--help")
        .output()
        .expect("run chaincall");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let listed = help.lines().any(|l| l.trim_start().starts_with("bench "));
    assert_eq!(listed, cfg!(feature = "bench"), "chaincall --help:\n{help}");

    let out = Command::new(env!("CARGO_BIN_EXE_chaincall"))
        .args(["bench", "srtp", "--help"])
        .output()
        .expect("run chaincall");
    assert_eq!(out.status.success(), cfg!(feature = "bench"));
    if !cfg!(feature = "bench") {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'bench'"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

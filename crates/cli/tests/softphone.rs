//! `chaincall phone ui` as a person uses it, in a detached tmux session (100x30): typing keys
//! with `send-keys` and reading the screen with `capture-pane`, on the real network of phone.rs
//! (anvil, wallet server, sipd over TLS-PSK, two onboarded phones). Alice's softphone calls bob's
//! `phone listen` (registration shown, bob shown verified with the pair's safety number, `h`
//! hangs up, the report), then bob's `phone call` rings alice's screen (bob shown verified with
//! his key's fingerprint, `a` answers, `phone hangup` from another terminal ends it), and `q`
//! quits with the terminal restored.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chaincall_identity::{Fingerprint, IdentityName, SafetyNumber};
use common::*;

/// How long a screen may take to show what the test waits for (a call's set-up includes
/// proven key lookups on anvil).
const SCREEN_WITHIN: Duration = Duration::from_secs(60);

/// A tmux server of the test's own (its socket in the phone's folder, no user configuration)
/// with one session running `command`; killed on drop.
struct Tmux {
    tmux: PathBuf,
    socket: PathBuf,
    home: PathBuf,
}

impl Tmux {
    fn start(tmux: PathBuf, home: &Path, command: &str) -> Self {
        let t = Self {
            tmux,
            socket: home.join("tmux.sock"),
            home: home.to_path_buf(),
        };
        let status = t
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                "ui",
                "-x",
                "100",
                "-y",
                "30",
                "-c",
            ])
            .arg(home)
            .arg(command)
            .status()
            .expect("tmux starts");
        assert!(status.success(), "tmux new-session");
        t
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.tmux);
        cmd.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]);
        cmd
    }

    /// Types `keys` (tmux key names: `Enter`, or literal text).
    fn send(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "ui"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success(), "tmux send-keys {keys:?}");
    }

    /// The visible screen, one string a row.
    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "ui"])
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until it shows every one of `needles` (compared as text: box borders
    /// dropped and every run of blanks, line breaks included, read as one space, so a line the
    /// screen wrapped still matches); returns that screen. Panics with the last screen and the
    /// softphone's log after [`SCREEN_WITHIN`].
    fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + SCREEN_WITHIN;
        loop {
            let screen = self.screen();
            let text = as_text(&screen);
            let missing: Vec<&str> = needles
                .iter()
                .copied()
                .filter(|n| !text.contains(&as_text(n)))
                .collect();
            if missing.is_empty() {
                return screen;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.home.join("ui.log")).unwrap_or_default();
                panic!("the screen does not show {missing:?}:\n{screen}\nlog:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The screen's words: box-drawing characters dropped, blanks collapsed.
fn as_text(screen: &str) -> String {
    let words: String = screen
        .chars()
        .map(|c| match c {
            '│' | '─' | '┌' | '┐' | '└' | '┘' => ' ',
            c => c,
        })
        .collect();
    words.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn fingerprint(home: &Path, number: &str) -> Fingerprint {
    let name = IdentityName::parse(number).unwrap();
    Fingerprint::new(&name, &keys_of(home).identity.public())
}

#[test]
fn the_softphone_calls_answers_and_shows_who_is_verified_under_tmux() {
    let Some(tmux) = chaincall_testkit::peer("tmux") else {
        return;
    };
    let Some(net) = network() else { return };
    let alice = net.onboarded_phone("alice", ALICE);
    let bob = net.onboarded_phone("bob", BOB);
    let (alice_fp, bob_fp) = (fingerprint(&alice, ALICE), fingerprint(&bob, BOB));
    let safety = SafetyNumber::from_fingerprints(&alice_fp, &bob_fp);

    // Bob answers one call by himself (`auto_answer = true` in his config).
    let listener = listening(&bob, &["--count", "1"], "listening");
    let command = format!(
        "'{}' phone --config phone.toml --passphrase-file passphrase ui --log ui.log; \
         echo \"ui exited with status $?\"; exec sleep 600",
        env!("CARGO_BIN_EXE_chaincall")
    );
    let ui = Tmux::start(tmux, &alice, &command);
    ui.wait_for(&[
        "chaincall softphone",
        "+15550100001 at sip.chaincall.test: registered (for 600 s",
        "Number: _",
        "Enter dials",
    ]);

    ui.send(&[BOB]);
    ui.wait_for(&["Number: +15550100002_"]);
    ui.send(&["Enter"]);
    ui.wait_for(&[
        "in call",
        "Callee: +15550100002",
        "Media keys: VERIFIED (mikey-pke, callee verified on chain as +15550100002)",
        &format!("Safety number: {}", safety.grouped()),
        "Key mode: mikey-pke",
        "Duration: 0:01",
        "h hangs up",
    ]);
    ui.send(&["h"]);
    ui.wait_for(&[
        "call ended",
        "Ended: you hung up",
        "Media keys: VERIFIED",
        "call to +15550100002 (mikey-pke, PCMU, end-to-end encrypted, keys bound to \
         +15550100002's on-chain key)",
        "SRTP packets sent",
        "recording",
    ]);
    let lines = listener.finish(Duration::from_secs(30));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"verified_peer\":\"+15550100001\"")),
        "bob's report of alice's call: {lines:?}"
    );

    // Bob calls; alice's screen rings and says who he is and how that is proven.
    let caller = Service::spawn(phone(&bob).args(["call", ALICE, "--seconds", "60"]));
    ui.wait_for(&[
        "INCOMING CALL",
        "verified on chain as +15550100002",
        &format!("key fingerprint {bob_fp}"),
        "Not proven by any call: the display name and the domain.",
        "a answers · d declines",
    ]);
    ui.send(&["a"]);
    ui.wait_for(&[
        "in call",
        "Media keys: VERIFIED (mikey-pke, caller verified on chain as +15550100002)",
    ]);
    // `phone hangup` from another terminal reaches the softphone through its control socket.
    let out =
        ok(chaincall()
            .current_dir(&alice)
            .args(["phone", "--config", "phone.toml", "hangup"]));
    assert!(out.starts_with("hung up "), "{out}");
    ui.wait_for(&["Ended: you hung up", "call from +15550100002"]);
    let out = caller.finish(Duration::from_secs(30));
    assert!(
        out.iter().any(|l| l.contains("call to +15550100001")),
        "bob's report: {out:?}"
    );

    // q quits: the registration is removed and the shell's screen is back.
    ui.send(&["q"]);
    let screen = ui.wait_for(&["ui exited with status 0"]);
    assert!(
        !screen.contains("chaincall softphone"),
        "the alternate screen is left:\n{screen}"
    );
}

//! A call report and a caller as `chaincall phone call --json` and `phone listen` print them: one
//! JSON object each, with stable keys that scripts read; and a caller as a terminal shows it,
//! with the peer's control characters escaped.

use std::path::Path;
use std::time::Duration;

use chaincall_media::jitter::JitterStats;
use serde::Serialize;
use serde_json::json;

use crate::caller::{CallerId, Verification};
use crate::calls::ListenEvent;
use crate::config_file::PhoneFileConfig;
use crate::phone::CallReport;
use crate::store::PhoneSecrets;

/// The caller in JSON lines: `{uri, display_name, claimed, verification, reason}`.
#[derive(Debug, Clone, Serialize)]
pub struct CallerJson<'a> {
    /// The whole From URI, as the caller sent it.
    pub uri: &'a str,
    /// The From's display name, if any.
    pub display_name: Option<&'a str>,
    /// The number the From claims, if it names one.
    pub claimed: Option<&'a str>,
    /// `verified`, `unverified` or `likely_spoof`.
    pub verification: &'static str,
    /// What proved a verified caller: `passport`, `mikey` or `passport+mikey`.
    pub proof: Option<&'static str>,
    /// Why the caller is not verified.
    pub reason: Option<&'a str>,
}

impl<'a> From<&'a CallerId> for CallerJson<'a> {
    fn from(caller: &'a CallerId) -> Self {
        Self {
            uri: &caller.uri,
            display_name: caller.display_name.as_deref(),
            claimed: caller.claimed.as_ref().map(|c| c.as_str()),
            verification: caller.verification.name(),
            proof: match &caller.verification {
                Verification::Verified { proof, .. } => Some(proof.name()),
                _ => None,
            },
            reason: caller.verification.reason(),
        }
    }
}

/// A call report in JSON; the trust fields (safety number, key changes) are the caller's to add.
#[derive(Debug, Clone, Serialize)]
pub struct CallReportJson<'a> {
    /// The SIP Call-ID.
    pub call_id: &'a str,
    /// This phone's number.
    pub number: &'a str,
    /// The other side (callee, or the caller's claimed number).
    pub peer: &'a str,
    /// Who called, for incoming calls.
    pub caller: Option<CallerJson<'a>>,
    /// `outgoing` or `incoming`.
    pub direction: &'static str,
    /// How the SRTP keys were agreed (`mikey-pke`, `sdes`, …).
    pub key_mode: &'static str,
    /// The codec's rtpmap name: `opus`, `PCMU` or `PCMA`.
    pub codec: &'static str,
    /// The peer whose on-chain key the call's keys are bound to.
    pub verified_peer: Option<&'a str>,
    /// What protects the call, in words ([`protection`]).
    pub protection: String,
    /// Key lookup time, milliseconds.
    pub key_retrieval_ms: f64,
    /// Whether the lookup was proven against the trusted block.
    pub key_retrieval_verified: bool,
    /// INVITE to both SRTP contexts keyed, milliseconds.
    pub call_setup_ms: f64,
    /// MIKEY processing, milliseconds.
    pub mikey_ms: f64,
    /// INVITE to 200 OK, milliseconds.
    pub invite_to_200_ms: f64,
    /// The signalling connection dropped during the call (the media went on).
    pub signalling_lost: bool,
    /// How the call ended, in words (`hung up`, `cancelled by caller`, …).
    pub ended: &'static str,
    /// Why the media could not be secured, when that ended the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'a str>,
    /// SRTP packets sent.
    pub srtp_packets_sent: u64,
    /// SRTP packets received and authenticated.
    pub srtp_packets_received: u64,
    /// SRTP packets refused (authentication, replay).
    pub srtp_packets_rejected: u64,
    /// SRTCP packets sent.
    pub srtcp_packets_sent: u64,
    /// SRTCP packets received.
    pub srtcp_packets_received: u64,
    /// Where the received audio was written (`null`: not recorded).
    pub recording: Option<String>,
    /// Samples received.
    pub recorded_samples: usize,
    /// Their rate, Hz (8,000; 48,000 for an Opus call of a wide-band phone).
    pub recorded_rate: u32,
    /// Seconds received.
    pub recorded_seconds: f64,
    /// The receive jitter buffer's counters (docs/audio.md, "Statistics"): loss, lateness,
    /// concealment, FEC, delays, interarrival jitter.
    pub jitter: &'a JitterStats,
    /// ZRTP's outcome (ZRTP calls): `{sas, chain_bound, cache, peer_zid, sas_verified,
    /// peer_sas_verified, pin, pin_previous, exchange_ms}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zrtp: Option<serde_json::Value>,
    /// What went wrong with the microphone or speaker (`audio = "device"`); absent when nothing.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub audio_warnings: &'a [String],
}

/// ZRTP's outcome in JSON: the SAS, whether the chain binding held, the retained-secret status
/// (`no-secrets`, `matched`, `mismatch`), the peer's ZID, whether the SAS was confirmed (by us,
/// by the peer), the ZID ↔ identity pin (`new`, `same`, `changed` with `pin_previous`; null
/// when the exchange was not chain-bound) and the exchange's time.
pub fn zrtp_json(z: &crate::zrtp_media::ZrtpStatus) -> serde_json::Value {
    json!({
        "sas": z.sas,
        "chain_bound": z.chain_bound,
        "cache": z.cache_name(),
        "peer_zid": z.peer_zid,
        "sas_verified": z.sas_verified,
        "peer_sas_verified": z.peer_sas_verified,
        "pin": z.pin.as_ref().map(|p| p.name()),
        "pin_previous": match &z.pin {
            Some(crate::zrtp_store::ZidPin::Changed { previous }) => Some(previous.as_str()),
            _ => None,
        },
        "exchange_ms": ms(z.exchange),
    })
}

impl<'a> CallReportJson<'a> {
    /// The report of a call of `number`, whose received audio is at `recording` (if recorded).
    pub fn new(number: &'a str, r: &'a CallReport, recording: Option<&Path>) -> Self {
        Self {
            call_id: &r.call_id,
            number,
            peer: &r.peer,
            caller: r.caller.as_ref().map(CallerJson::from),
            direction: if r.outgoing { "outgoing" } else { "incoming" },
            key_mode: r.mode.name(),
            codec: r.codec.encoding_name(),
            verified_peer: r.verified_peer.as_ref().map(|p| p.as_str()),
            protection: protection(r),
            key_retrieval_ms: ms(r.timings.key_retrieval),
            key_retrieval_verified: r.lookup_verified,
            call_setup_ms: ms(r.timings.call_setup),
            mikey_ms: ms(r.timings.mikey),
            invite_to_200_ms: ms(r.timings.signalling),
            signalling_lost: r.signalling_lost,
            ended: r.ended.describe(),
            failure: r.failure.as_deref(),
            srtp_packets_sent: r.stats.rtp_sent,
            srtp_packets_received: r.stats.rtp_received,
            srtp_packets_rejected: r.stats.rtp_rejected,
            srtcp_packets_sent: r.stats.rtcp_sent,
            srtcp_packets_received: r.stats.rtcp_received,
            recording: recording.map(|p| p.display().to_string()),
            recorded_samples: r.recorded.len(),
            recorded_rate: r.recorded_rate,
            recorded_seconds: recorded_seconds(r),
            jitter: &r.jitter,
            zrtp: r.zrtp.as_ref().map(zrtp_json),
            audio_warnings: &r.audio_warnings,
        }
    }
}

/// A call report as `phone call` prints it: the peer, key mode, codec and protection, the timings,
/// the packet counts and the recording (the contact's trust lines are the caller's to add).
#[derive(Debug, Clone, Copy)]
pub struct TextReport<'a> {
    /// The report.
    pub report: &'a CallReport,
    /// Where the received audio was written (`None`: not recorded).
    pub recording: Option<&'a Path>,
}

impl std::fmt::Display for TextReport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.report;
        let (t, stats) = (&r.timings, &r.stats);
        let direction = if r.outgoing { "to" } else { "from" };
        let (mode, codec) = (r.mode.name(), r.codec.encoding_name());
        writeln!(
            f,
            "call {direction} {} ({mode}, {codec}, {})",
            r.peer,
            protection(r)
        )?;
        let proven = if r.lookup_verified {
            "proven against the trusted block"
        } else {
            "not proven"
        };
        writeln!(
            f,
            "  key retrieval  {:>9.3} ms ({proven})",
            ms(t.key_retrieval)
        )?;
        writeln!(
            f,
            "  call set-up    {:>9.3} ms (INVITE → both SRTP contexts keyed; MIKEY {:.3} ms, \
             INVITE → 200 OK {:.3} ms)",
            ms(t.call_setup),
            ms(t.mikey),
            ms(t.signalling)
        )?;
        writeln!(
            f,
            "  SRTP packets   sent {}, received {}, rejected {}; SRTCP sent {}, received {}",
            stats.rtp_sent,
            stats.rtp_received,
            stats.rtp_rejected,
            stats.rtcp_sent,
            stats.rtcp_received
        )?;
        if let Some(z) = &r.zrtp {
            let binding = if z.chain_bound {
                "chain binding held"
            } else {
                "NOT chain-bound: compare the SAS"
            };
            writeln!(
                f,
                "  ZRTP           SAS {} ({binding}; cached secrets {}; {:.3} ms)",
                z.sas,
                z.cache_name(),
                ms(z.exchange)
            )?;
            if let (Some(pin), Some(peer)) = (&z.pin, &r.verified_peer) {
                writeln!(
                    f,
                    "  ZRTP pin       {}",
                    pin.describe(&z.peer_zid, peer.as_str())
                )?;
            }
        }
        let j = &r.jitter;
        writeln!(
            f,
            "  jitter buffer  lost {}, late {}, concealed {}, FEC {}; delay {} ms (target {} ms), \
             jitter {:.1} ms",
            j.lost,
            j.late,
            j.concealed,
            j.fec_recovered,
            j.current_delay_ms,
            j.target_delay_ms,
            j.jitter_ms
        )?;
        for warning in &r.audio_warnings {
            writeln!(f, "  audio          {warning}")?;
        }
        writeln!(f, "  ended          {}", r.ended.describe())?;
        if let Some(why) = &r.failure {
            writeln!(f, "  failure        {why}")?;
        }
        if r.signalling_lost {
            writeln!(
                f,
                "  signalling     lost during the call (the media went on; SIP reconnects by itself)"
            )?;
        }
        match self.recording {
            Some(path) => write!(
                f,
                "  recording      {} ({:.2} s received)",
                path.display(),
                recorded_seconds(r)
            ),
            None => write!(
                f,
                "  recording      none (no record_dir; {:.2} s received)",
                recorded_seconds(r)
            ),
        }
    }
}

/// A call report as `phone call --json` prints it and `phone listen` prints one per call:
/// [`CallReportJson`] with the contact's trust fields
/// ([`add_call_trust`](crate::contact_view::add_call_trust)).
pub fn call_json(number: &str, r: &CallReport, recording: Option<&Path>) -> serde_json::Value {
    let mut report = json!(CallReportJson::new(number, r, recording));
    crate::contact_view::add_call_trust(&mut report, r);
    report
}

/// A call report as `phone call` prints it: the [`TextReport`], then the contact's trust lines
/// ([`CallTrustView`](crate::contact_view::CallTrustView)); no newline at the end.
#[derive(Debug, Clone, Copy)]
pub struct CallText<'a> {
    /// The report.
    pub report: &'a CallReport,
    /// Where the received audio was written (`None`: not recorded).
    pub recording: Option<&'a Path>,
}

impl std::fmt::Display for CallText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (report, recording) = (self.report, self.recording);
        write!(f, "{}", TextReport { report, recording })?;
        let trust = crate::contact_view::CallTrustView(report).to_string();
        if !trust.is_empty() {
            write!(f, "\n{}", trust.trim_end())?;
        }
        Ok(())
    }
}

/// The JSON line `phone listen` prints for `event`; `None` for a call's end (its report, with
/// the contact's trust fields, is the caller's) and for events shown only on the terminal.
pub fn listen_line(event: &ListenEvent<'_>) -> Option<serde_json::Value> {
    match *event {
        ListenEvent::Incoming {
            call_id,
            caller,
            awaiting_answer,
        } => Some(json!({
            "call_id": call_id,
            "incoming": true,
            "caller": CallerJson::from(caller),
            "awaiting_answer": awaiting_answer,
        })),
        ListenEvent::Rejected { call_id, caller } => {
            // `peer` as in call reports: the claimed number (the whole From is in `caller`).
            let peer = caller
                .claimed
                .as_ref()
                .map_or(caller.uri.as_str(), |c| c.as_str());
            Some(json!({
                "call_id": call_id,
                "peer": peer,
                "caller": CallerJson::from(caller),
                "rejected": true,
            }))
        }
        ListenEvent::Refused {
            call_id,
            reason,
            caller,
        } => Some(json!({
            "call_id": call_id,
            "refused": reason,
            "caller": caller.map(CallerJson::from),
        })),
        ListenEvent::SignallingLost { reason } => Some(json!({
            "signalling": "lost",
            "reason": reason,
        })),
        ListenEvent::Reconnected { attempt } => Some(json!({
            "signalling": "reconnected",
            "attempt": attempt,
        })),
        ListenEvent::Reregistered { expires } => Some(json!({
            "signalling": "registered",
            "expires": expires,
        })),
        _ => None,
    }
}

/// What a command did with the phone's keys, as `phone init`, `phone export` and `phone import`
/// report it: the headline, the identity key's fingerprint and the wallet, and what comes next.
#[derive(Debug, Clone, Copy)]
pub struct KeysReport<'a> {
    /// What happened.
    pub done: KeysDone<'a>,
    /// The configuration (number, key file, trust).
    pub cfg: &'a PhoneFileConfig,
    /// The keys.
    pub secrets: &'a PhoneSecrets,
}

/// What happened to the keys ([`KeysReport`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum KeysDone<'a> {
    /// `init` made them.
    Made,
    /// `export` wrote a backup to this file.
    Exported(&'a Path),
    /// `import` restored them from a backup.
    Imported,
}

impl std::fmt::Display for KeysReport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (cfg, secrets) = (self.cfg, self.secrets);
        match self.done {
            KeysDone::Made => match &cfg.number {
                Some(n) => writeln!(f, "phone {n}")?,
                None => writeln!(
                    f,
                    "phone without a number yet (the wallet server assigns one at onboarding)"
                )?,
            },
            KeysDone::Exported(out) => writeln!(
                f,
                "exported {} to {} (encrypted under the backup passphrase, mode 0600)",
                cfg.number_text(),
                out.display()
            )?,
            KeysDone::Imported => writeln!(
                f,
                "imported {} into {} (sealed under the phone's passphrase, mode 0600)",
                match secrets.number.as_str() {
                    "" => "a phone without a number",
                    number => number,
                },
                cfg.key_file.display()
            )?,
        }
        let fingerprint = secrets.own_fingerprint(cfg.number.as_ref());
        let on_chain = match self.done {
            KeysDone::Made => " (P-256; goes on chain at onboarding)",
            _ => "",
        };
        writeln!(f, "  identity key  {fingerprint}{on_chain}")?;
        write!(f, "  wallet        {}", secrets.wallet.address())?;
        match self.done {
            KeysDone::Made => {
                let key_file = cfg.key_file.display();
                write!(f, "\n  key file      {key_file} (encrypted, mode 0600)")?;
                if let Some((n, h)) = cfg.trust {
                    write!(f, "\n  trusted block {n}:{h}")?;
                }
                write!(f, "\nnext: chaincall phone onboard --receipt FILE")
            }
            KeysDone::Exported(out) => write!(
                f,
                "\nIt holds the wallet and identity keys: keep it and its passphrase apart. \
                 Restore with `chaincall phone import --in {}`.",
                out.display()
            ),
            KeysDone::Imported if secrets.pending_rotation().is_some() => write!(
                f,
                "\n  a key rotation was under way; the next phone command finishes it"
            ),
            KeysDone::Imported => Ok(()),
        }
    }
}

/// Milliseconds with microsecond precision, as reports show durations.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Seconds of audio the call received.
pub fn recorded_seconds(r: &CallReport) -> f64 {
    r.recorded.len() as f64 / f64::from(r.recorded_rate.max(1))
}

/// What protects the call, in words: bound to the peer's on-chain key, or only encrypted.
pub fn protection(r: &CallReport) -> String {
    match &r.verified_peer {
        Some(p) => format!(
            "end-to-end encrypted, keys bound to {}'s on-chain key",
            p.as_str()
        ),
        None => "encrypted, key not verified on chain".to_owned(),
    }
}

/// The caller as the prompt shows it: the whole From (display name and URI, escaped for the
/// terminal) and what the call proves, e.g. `<sip:+15550100001@evil.example>: NOT VERIFIED —
/// likely spoof (…)`.
pub fn describe_caller(caller: &CallerId) -> String {
    let who = match &caller.display_name {
        Some(name) => format!("\"{}\" <{}>", for_terminal(name), for_terminal(&caller.uri)),
        None => format!("<{}>", for_terminal(&caller.uri)),
    };
    let state = match &caller.verification {
        Verification::Verified {
            identity,
            proof,
            fingerprint,
            ..
        } => format!(
            "verified on chain as {} ({} signature; key fingerprint {fingerprint})",
            identity.as_str(),
            proof.name()
        ),
        Verification::Unverified { reason } => {
            format!("NOT VERIFIED ({})", for_terminal(reason))
        }
        Verification::LikelySpoof { reason } => {
            format!("NOT VERIFIED — likely spoof ({})", for_terminal(reason))
        }
    };
    format!("{who}: {state}")
}

/// A peer-supplied name made safe to print on a terminal: control characters (ESC, CR, ...)
/// are shown escaped, so a caller cannot move the cursor or repaint the line to fake who calls.
pub fn for_terminal(peer: &str) -> String {
    let mut shown = String::with_capacity(peer.len());
    for c in peer.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller_json(caller: &CallerId) -> serde_json::Value {
        serde_json::to_value(CallerJson::from(caller)).unwrap()
    }

    #[test]
    fn the_prompt_shows_the_whole_from_and_what_the_call_proves() {
        let alice = "+15550100001".parse().unwrap();
        let spoof = CallerId {
            uri: "sip:+15550100001@evil.example".into(),
            display_name: Some("Bank\u{1b}[2K".into()),
            claimed: Some(alice),
            verification: Verification::LikelySpoof {
                reason: "+15550100001 has a key on chain but this call proves nothing".into(),
            },
        };
        assert_eq!(
            describe_caller(&spoof),
            "\"Bank\\u{1b}[2K\" <sip:+15550100001@evil.example>: NOT VERIFIED — likely spoof \
             (+15550100001 has a key on chain but this call proves nothing)"
        );
        let json = caller_json(&spoof);
        assert_eq!(json["proof"], serde_json::Value::Null);
        assert_eq!(json["verification"], "likely_spoof");
        assert_eq!(json["claimed"], "+15550100001");
        assert_eq!(json["uri"], "sip:+15550100001@evil.example");
        let verified = CallerId {
            display_name: None,
            uri: "sip:+15550100001@sip.example.org".into(),
            verification: Verification::Verified {
                identity: "+15550100001".parse().unwrap(),
                proof: crate::caller::Proof::Passport,
                lookup_verified: true,
                fingerprint: "0011223344556677".into(),
            },
            ..spoof
        };
        assert_eq!(
            describe_caller(&verified),
            "<sip:+15550100001@sip.example.org>: verified on chain as +15550100001 (passport \
             signature; key fingerprint 0011223344556677)"
        );
        assert_eq!(caller_json(&verified)["reason"], serde_json::Value::Null);
        assert_eq!(caller_json(&verified)["proof"], "passport");
    }

    #[test]
    fn a_callers_terminal_escapes_are_shown_not_obeyed() {
        // ESC [2K erases the line and CR returns to its start: a caller named like this would
        // repaint "incoming call from" with a name of its choosing.
        let hostile = "+15550100002\u{1b}[2K\rincoming call from +15550100001";
        let shown = for_terminal(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "+15550100002\\u{1b}[2K\\rincoming call from +15550100001"
        );
        assert_eq!(for_terminal("tel:+15550100001"), "tel:+15550100001");
    }

    #[test]
    fn listen_prints_a_line_for_each_step_of_a_reconnect() {
        let line = |e| listen_line(&e).unwrap().to_string();
        assert_eq!(
            line(ListenEvent::SignallingLost {
                reason: "closed by the server"
            }),
            r#"{"reason":"closed by the server","signalling":"lost"}"#
        );
        assert_eq!(
            line(ListenEvent::Reconnected { attempt: 3 }),
            r#"{"attempt":3,"signalling":"reconnected"}"#
        );
        assert_eq!(
            line(ListenEvent::Reregistered { expires: 600 }),
            r#"{"expires":600,"signalling":"registered"}"#
        );
    }

    #[test]
    fn durations_are_milliseconds_to_the_microsecond() {
        assert_eq!(ms(Duration::from_nanos(1_234_567)), 1.235);
        assert_eq!(ms(Duration::ZERO), 0.0);
    }

    #[test]
    fn key_reports_read_as_init_export_and_import_always_printed_them() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::onboarding::tests::config(dir.path(), Some("+15550100001"));
        let secrets = PhoneSecrets::generate("+15550100001");
        let (fp, wallet) = (
            secrets.own_fingerprint(cfg.number.as_ref()),
            secrets.wallet.address(),
        );
        let key_file = cfg.key_file.display();
        let made = KeysReport {
            done: KeysDone::Made,
            cfg: &cfg,
            secrets: &secrets,
        };
        assert_eq!(
            made.to_string(),
            format!(
                "phone +15550100001\n  identity key  {fp} (P-256; goes on chain at onboarding)\n  \
                 wallet        {wallet}\n  key file      {key_file} (encrypted, mode 0600)\nnext: \
                 chaincall phone onboard --receipt FILE"
            )
        );
        let out = Path::new("/backups/alice.backup");
        let exported = KeysReport {
            done: KeysDone::Exported(out),
            cfg: &cfg,
            secrets: &secrets,
        };
        assert_eq!(
            exported.to_string(),
            format!(
                "exported +15550100001 to /backups/alice.backup (encrypted under the backup \
                 passphrase, mode 0600)\n  identity key  {fp}\n  wallet        {wallet}\nIt holds \
                 the wallet and identity keys: keep it and its passphrase apart. Restore with \
                 `chaincall phone import --in /backups/alice.backup`."
            )
        );
        let imported = KeysReport {
            done: KeysDone::Imported,
            cfg: &cfg,
            secrets: &secrets,
        };
        assert_eq!(
            imported.to_string(),
            format!(
                "imported +15550100001 into {key_file} (sealed under the phone's passphrase, mode \
                 0600)\n  identity key  {fp}\n  wallet        {wallet}"
            )
        );
    }
}

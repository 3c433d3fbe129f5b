//! ZRTP in a call's media task: the engine driven on the call's one socket with real time, and
//! the SRTP session built from its keys on `SecureOn`. Until then nothing but ZRTP is sent (no
//! audio in the clear, no audio at all) and SRTP that arrives early is dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chaincall_identity::Secret;

use chaincall_io::Output;
use chaincall_media::{MediaConfig, MediaOptions, MediaSession};
use chaincall_zrtp::{AuxStatus, CacheStatus, Event, SecureOn};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::core::KeyedCall;
use crate::negotiation::StreamKey;
use crate::negotiation::ZrtpMedia;
use crate::phone::{MediaFailure, PhoneEvent, append_keylog};
use crate::zrtp_store::ZidPin;

/// What ZRTP agreed, shown to the user ([`PhoneEvent::CallUp`], the call report, `--json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZrtpStatus {
    /// The Short Authentication String both users may compare.
    pub sas: String,
    /// Whether the chain binding held: the aux secret from both on-chain keys matched, so the
    /// exchange is authenticated without reading the SAS (docs/zrtp.md, "The chain binding").
    pub chain_bound: bool,
    /// How the retained secrets fared (`Mismatch`: compare the SAS).
    pub cache: CacheStatus,
    /// The peer's ZID, hex.
    pub peer_zid: String,
    /// We confirmed this SAS with the peer on an earlier call (RFC 6189 §4.6.1.1's flag in our
    /// cache, kept while the retained secrets match), or on this one (`ZrtpRun::confirm_sas`).
    pub sas_verified: bool,
    /// The peer says it verified the SAS with us on an earlier call (its V flag).
    pub peer_sas_verified: bool,
    /// The ZID ↔ on-chain identity pin (after a chain-bound exchange).
    pub pin: Option<ZidPin>,
    /// The media start to `SecureOn`.
    pub exchange: Duration,
}

impl ZrtpStatus {
    /// The cache status in reports: `no-secrets`, `matched` or `mismatch`.
    pub fn cache_name(&self) -> &'static str {
        match self.cache {
            CacheStatus::NoSecrets => "no-secrets",
            CacheStatus::Matched => "matched",
            CacheStatus::Mismatch => "mismatch",
        }
    }
}

/// The session to build once the keys exist.
pub(crate) struct PendingSession {
    pub(crate) config: MediaConfig,
    pub(crate) options: MediaOptions,
    pub(crate) audio: Vec<i16>,
    /// Where to append the SRTP master keys (`--keylog`), as MIKEY calls do.
    pub(crate) keylog: Option<PathBuf>,
}

/// One call's exchange in its media task.
pub(crate) struct ZrtpRun {
    media: Box<ZrtpMedia>,
    pending: Option<PendingSession>,
    /// The core's [`KeyedCall`], told as [`PhoneEvent::CallUp`] once secure.
    up: Option<oneshot::Receiver<KeyedCall>>,
    /// Secure, but the `KeyedCall` has not come yet.
    unannounced: bool,
    started: Instant,
    pub(crate) status: Option<ZrtpStatus>,
    call_id: String,
    events: mpsc::UnboundedSender<PhoneEvent>,
    /// Tells the phone the exchange failed, so it hangs up: `(call, why)`.
    failed: mpsc::UnboundedSender<MediaFailure>,
    /// The `--keylog` file and the received stream's key, logged once its SSRC is known.
    keylog: Option<(PathBuf, StreamKey)>,
}

/// What one drain of the engine gives the media loop.
pub(crate) struct Drained {
    /// ZRTP packets for the peer's media address.
    pub(crate) packets: Vec<Vec<u8>>,
    /// The engine's next deadline.
    pub(crate) deadline: Option<Instant>,
    /// The SRTP session, once keyed.
    pub(crate) session: Option<MediaSession>,
}

impl ZrtpRun {
    pub(crate) fn new(
        mut media: Box<ZrtpMedia>,
        pending: PendingSession,
        up: oneshot::Receiver<KeyedCall>,
        call_id: String,
        (events, failed): (
            mpsc::UnboundedSender<PhoneEvent>,
            mpsc::UnboundedSender<MediaFailure>,
        ),
        now: Instant,
    ) -> Self {
        // The answer's hash (an offerer's engine was built before the answer came).
        if let Some(hash) = media.peer_hello_hash.take() {
            media.engine.set_peer_hello_hash(hash, now);
        }
        Self {
            media,
            pending: Some(pending),
            up: Some(up),
            unannounced: false,
            started: now,
            status: None,
            call_id,
            events,
            failed,
            keylog: None,
        }
    }

    /// A datagram that [`chaincall_zrtp::wire::is_zrtp`] accepted.
    pub(crate) fn handle_input(&mut self, datagram: &[u8], now: Instant) {
        self.media.engine.handle_input(datagram, now);
    }

    /// The engine's deadline passed (or not: early calls are harmless).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.media.engine.handle_timeout(now);
    }

    /// Drains the engine's output; keys the session on `SecureOn`.
    pub(crate) fn drain(&mut self, now: Instant) -> Drained {
        let mut out = Drained {
            packets: Vec::new(),
            deadline: None,
            session: None,
        };
        loop {
            match self.media.engine.poll_output() {
                Output::Transmit(t) => out.packets.push(t.contents),
                Output::Event(Event::SecureOn(s)) => out.session = self.secure(*s, now),
                Output::Event(Event::Error(e)) => {
                    debug!(call = %self.call_id, error = %e, "ZRTP packet refused")
                }
                Output::Event(Event::Failed(e)) => {
                    warn!(call = %self.call_id, error = %e, "ZRTP failed: no media was sent; hanging up");
                    let reason = format!("ZRTP failed: {e}");
                    let _ = self.events.send(PhoneEvent::Refused {
                        call_id: self.call_id.clone(),
                        reason: reason.clone(),
                    });
                    let _ = self.failed.send((self.call_id.clone(), reason));
                }
                Output::Event(_) => {}
                Output::Timeout(at) => {
                    out.deadline = at;
                    break;
                }
            }
        }
        if self.unannounced {
            self.announce();
        }
        out
    }

    fn secure(&mut self, s: SecureOn, now: Instant) -> Option<MediaSession> {
        let chain_bound = self.media.bound_to.is_some() && s.aux == AuxStatus::Matched;
        let pin = match (&self.media.bound_to, chain_bound) {
            (Some(identity), true) => Some(self.media.store.pin(&s.peer_zid, identity)),
            _ => None,
        };
        if let Some(ZidPin::Changed { previous }) = &pin {
            warn!(call = %self.call_id, %previous, "this peer's ZID was pinned to another identity");
        }
        let status = ZrtpStatus {
            sas: s.sas.text.clone(),
            chain_bound,
            cache: s.cache,
            peer_zid: hex::encode(s.peer_zid.0),
            sas_verified: s.cache == CacheStatus::Matched
                && chaincall_zrtp::SecretCache::load(&*self.media.store, &s.peer_zid).sas_verified,
            peer_sas_verified: s.peer_sas_verified,
            pin,
            exchange: now.saturating_duration_since(self.started),
        };
        info!(call = %self.call_id, sas = %status.sas, chain_bound, cache = status.cache_name(), "ZRTP secure");
        if self.media.bound_to.is_none() {
            info!(call = %self.call_id, "ZRTP without the chain binding (the peer has no key on chain): compare the SAS");
        }
        self.status = Some(status);
        self.unannounced = true;
        let pending = self.pending.take()?;
        let keyed = s
            .srtp
            .outbound_session()
            .and_then(|o| Ok((o, s.srtp.inbound_session()?)));
        if let Some(path) = &pending.keylog {
            let key = |m: &chaincall_zrtp::SrtpMaster, ssrc| StreamKey {
                ssrc,
                profile: s.srtp.profile,
                key_and_salt: Secret::new(
                    [&m.dangerous_key()[..], &m.dangerous_salt()[..]].concat(),
                ),
            };
            warn!(file = %path.display(), "writing ZRTP's SRTP master keys to the key log: anyone with this file can decrypt this call");
            append_keylog(path, &[key(&s.srtp.local, pending.config.local_ssrc)]);
            self.keylog = Some((path.clone(), key(&s.srtp.remote, 0)));
        }
        match keyed {
            Ok((outbound, inbound)) => Some(MediaSession::with_options(
                pending.config,
                pending.options,
                outbound,
                inbound,
                pending.audio,
                now,
            )),
            Err(e) => {
                warn!(call = %self.call_id, error = %e, "SRTP keying from ZRTP failed");
                None
            }
        }
    }

    /// The users compared the SAS and it matched: the flag goes into the cache for the peer's
    /// ZID (the engine ignores it before the exchange is secure).
    pub(crate) fn confirm_sas(&mut self) {
        self.media.engine.confirm_sas();
        if let Some(status) = self.status.as_mut() {
            info!(call = %self.call_id, "the user confirmed the SAS");
            status.sas_verified = true;
        }
    }

    /// Logs the received stream's key to `--keylog` at the call's end, with the SSRC the peer
    /// turned out to send from (as MIKEY calls do).
    pub(crate) fn log_inbound_key(&mut self, session: Option<&MediaSession>) {
        let Some((path, mut key)) = self.keylog.take() else {
            return;
        };
        if let Some(ssrc) = session.and_then(|s| s.stats().peer_ssrc) {
            key.ssrc = ssrc;
        }
        append_keylog(&path, &[key]);
    }

    /// Tells the user the call is up, with the SAS, once the core's view of it has come.
    fn announce(&mut self) {
        let Some(rx) = self.up.as_mut() else {
            return;
        };
        let Ok(up) = rx.try_recv() else {
            return;
        };
        self.up = None;
        self.unannounced = false;
        let _ = self
            .events
            .send(PhoneEvent::call_up(up, self.status.clone()));
    }
}

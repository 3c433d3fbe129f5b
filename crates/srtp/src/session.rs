//! The session: one master key, per-SSRC stream state created on demand, the packet limits.

use std::collections::HashMap;
use std::fmt;

use zeroize::Zeroizing;

use crate::error::SrtpError;
use crate::profile::Profile;
use crate::replay::{MAX_WINDOW, MIN_WINDOW, ReplayWindow};
use crate::transform::Transform;
use crate::types::{Roc, SeqNo, Ssrc, StreamState};

/// RFC 3711 §9.2: at most 2^48 SRTP packets per master key.
pub const SRTP_PACKET_LIMIT: u64 = 1 << 48;
/// RFC 3711 §9.2: at most 2^31 SRTCP packets per master key.
pub const SRTCP_PACKET_LIMIT: u64 = 1 << 31;
/// How many packets before a limit `key_status` starts saying `RekeySoon` (libsrtp's soft limit).
pub const REKEY_MARGIN: u64 = 1 << 16;
/// Longest MKI accepted, in octets (libsrtp's bound).
pub const MAX_MKI_LEN: usize = 128;

/// How a session is set up: profile, replay window, stream bound, MKI.
///
/// Defaults follow RFC 3711: a 64-packet replay window (§3.3.2), no MKI, streams created on demand
/// for any SSRC up to 64 of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpConfig {
    profile: Profile,
    replay_window: usize,
    max_streams: usize,
    accept_unknown_ssrc: bool,
    mki: Vec<u8>,
}

impl SrtpConfig {
    /// Defaults for `profile`.
    pub fn new(profile: Profile) -> Self {
        SrtpConfig {
            profile,
            replay_window: MIN_WINDOW,
            max_streams: 64,
            accept_unknown_ssrc: true,
            mki: Vec::new(),
        }
    }

    /// Replay window size in packets, 64 to 32768 (RFC 3711 §3.3.2: at least 64).
    pub fn with_replay_window(mut self, packets: usize) -> Self {
        self.replay_window = packets;
        self
    }

    /// At most this many SSRC streams live in the session (each costs one window bitmap).
    pub fn with_max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }

    /// Whether a packet for an SSRC without a stream creates one (default) or fails with
    /// [`SrtpError::UnknownSsrc`]. Inbound, a stream is only created once the packet authenticates.
    pub fn with_unknown_ssrc(mut self, accept: bool) -> Self {
        self.accept_unknown_ssrc = accept;
        self
    }

    /// Carries this MKI in every packet and requires it on every received one (RFC 3711 §3.1).
    pub fn with_mki(mut self, mki: &[u8]) -> Self {
        self.mki = mki.to_vec();
        self
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The MKI (empty when none).
    pub fn mki(&self) -> &[u8] {
        &self.mki
    }
}

/// Whether the master key may keep going (RFC 3711 §9.2 packet limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Far from both limits.
    Fresh,
    /// Within [`REKEY_MARGIN`] packets of a limit: start re-keying (MIKEY) now.
    RekeySoon,
    /// A limit was reached: protect and unprotect fail with [`SrtpError::KeyLimitReached`].
    Exhausted,
}

/// Per-SSRC state. Secret-free: all keys live in the session.
#[derive(Debug, Clone)]
struct Stream {
    ssrc: u32,
    /// ROC to assume before the first packet in each direction (RFC 3711 §3.3.1; MIKEY sends it).
    initial_roc: u32,
    /// Indices sent: the highest one gives ROC and s_l for the sender; the window refuses reuse.
    tx: ReplayWindow,
    /// Indices received and authenticated (RFC 3711 §3.3.2).
    rx: ReplayWindow,
    srtcp_tx_next: u32,
    srtcp_rx: ReplayWindow,
}

impl Stream {
    fn new(ssrc: u32, roc: u32, window: usize) -> Self {
        Stream {
            ssrc,
            initial_roc: roc,
            tx: ReplayWindow::new(window),
            rx: ReplayWindow::new(window),
            srtcp_tx_next: 0,
            srtcp_rx: ReplayWindow::new(window),
        }
    }
}

/// RFC 3711 §3.3.1 (Appendix A): the index of a packet with sequence number `seq`, given the
/// highest index so far (`top`, giving ROC and s_l) or, before any, the initial ROC.
fn estimate_index(top: Option<u64>, initial_roc: u32, seq: u16) -> Result<u64, SrtpError> {
    let Some(top) = top else {
        return Ok(u64::from(initial_roc) << 16 | u64::from(seq));
    };
    let roc = (top >> 16) as i64;
    let s_l = (top & 0xFFFF) as i64;
    let seq_i = i64::from(seq);
    let v = if s_l < 1 << 15 {
        if seq_i - s_l > 1 << 15 { roc - 1 } else { roc }
    } else if s_l - (1 << 15) > seq_i {
        roc + 1
    } else {
        roc
    };
    if v < 0 {
        // A packet from before ROC 0: older than anything this key protected.
        return Err(SrtpError::TooOld);
    }
    if v > i64::from(u32::MAX) {
        // The 48-bit index would wrap: the master key is used up (§9.2).
        return Err(SrtpError::KeyLimitReached);
    }
    Ok((v as u64) << 16 | seq as u64)
}

/// Length of the RTP header (RFC 3550 §5.1, §5.3.1) at the start of `pkt`.
fn rtp_header_len(pkt: &[u8]) -> Result<usize, SrtpError> {
    if pkt.len() < 12 {
        return Err(SrtpError::TooShort);
    }
    if pkt[0] >> 6 != 2 {
        return Err(SrtpError::Malformed("RTP version is not 2"));
    }
    let mut len = 12 + 4 * usize::from(pkt[0] & 0x0F);
    if pkt[0] & 0x10 != 0 {
        if pkt.len() < len + 4 {
            return Err(SrtpError::Malformed("RTP header extension truncated"));
        }
        len += 4 + 4 * usize::from(u16::from_be_bytes([pkt[len + 2], pkt[len + 3]]));
    }
    if len > pkt.len() {
        return Err(SrtpError::Malformed("RTP header longer than packet"));
    }
    Ok(len)
}

/// Grows `pkt` by `overhead` spare octets, lets `protect` seal `pkt[..len]` in place, and cuts
/// `pkt` to the sealed length; on an error `pkt` is restored to the plain packet.
fn grow_and_protect(
    pkt: &mut Vec<u8>,
    overhead: usize,
    protect: impl FnOnce(&mut [u8], usize) -> Result<usize, SrtpError>,
) -> Result<(), SrtpError> {
    let len = pkt.len();
    pkt.resize(len + overhead, 0);
    let result = protect(pkt, len);
    pkt.truncate(*result.as_ref().unwrap_or(&len));
    result.map(|_| ())
}

fn check_rtcp_header(pkt: &[u8]) -> Result<u32, SrtpError> {
    if pkt.len() < 8 {
        return Err(SrtpError::TooShort);
    }
    if pkt[0] >> 6 != 2 {
        return Err(SrtpError::Malformed("RTCP version is not 2"));
    }
    Ok(u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]))
}

/// SRTP and SRTCP under one master key: protects outgoing and unprotects incoming packets of any
/// number of SSRCs, in place.
///
/// Call order: build once from the keys MIKEY or SDES delivered, then call the `protect_*` /
/// `unprotect_*` methods per packet, in any order; check [`SrtpSession::key_status`] now and then
/// and re-key before it says `Exhausted`. After an error the session is unchanged (a rejected
/// packet never moves a window or a counter); the buffer content is then unspecified.
///
/// RFC 3711 keys SRTP per direction: each side usually has one session for what it sends and one
/// for what it receives. Both directions work on one session, with separate windows.
pub struct SrtpSession {
    config: SrtpConfig,
    rtp: Transform,
    rtcp: Transform,
    streams: Vec<Stream>,
    by_ssrc: HashMap<u32, usize>,
    /// Index of the stream of the last packet: the hot path skips the hash lookup.
    last: usize,
    srtp_packets: u64,
    srtcp_packets: u64,
}

impl fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material: only what a log may show.
        f.debug_struct("SrtpSession")
            .field("config", &self.config)
            .field("streams", &self.streams.len())
            .field("srtp_packets", &self.srtp_packets)
            .field("srtcp_packets", &self.srtcp_packets)
            .finish_non_exhaustive()
    }
}

impl SrtpSession {
    /// Builds a session from the master key and master salt, deriving all session keys now
    /// (RFC 3711 §4.3, key derivation rate 0). The master key is not kept.
    pub fn new(
        config: SrtpConfig,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        let p = config.profile;
        if master_key.len() != p.master_key_len() {
            return Err(SrtpError::InvalidConfig(
                "master key length does not match the profile",
            ));
        }
        if master_salt.len() != p.master_salt_len() {
            return Err(SrtpError::InvalidConfig(
                "master salt length does not match the profile",
            ));
        }
        let rtp = Transform::derive(p, master_key, master_salt, false);
        let rtcp = Transform::derive(p, master_key, master_salt, true);
        Self::with_transforms(config, rtp, rtcp)
    }

    /// Builds a session from master key and salt concatenated (the SDES `inline:` and libsrtp
    /// layout).
    pub fn from_key_and_salt(config: SrtpConfig, key_and_salt: &[u8]) -> Result<Self, SrtpError> {
        let k = config.profile.master_key_len();
        if key_and_salt.len() != k + config.profile.master_salt_len() {
            return Err(SrtpError::InvalidConfig(
                "key || salt length does not match the profile",
            ));
        }
        let material = Zeroizing::new(key_and_salt.to_vec());
        Self::new(config, &material[..k], &material[k..])
    }

    fn with_transforms(
        config: SrtpConfig,
        rtp: Transform,
        rtcp: Transform,
    ) -> Result<Self, SrtpError> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&config.replay_window) {
            return Err(SrtpError::InvalidConfig(
                "replay window must be 64..=32768 packets",
            ));
        }
        if config.mki.len() > MAX_MKI_LEN {
            return Err(SrtpError::InvalidConfig("MKI longer than 128 octets"));
        }
        if config.max_streams == 0 {
            return Err(SrtpError::InvalidConfig("max_streams must be at least 1"));
        }
        Ok(SrtpSession {
            config,
            rtp,
            rtcp,
            streams: Vec::new(),
            by_ssrc: HashMap::new(),
            last: 0,
            srtp_packets: 0,
            srtcp_packets: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SrtpConfig {
        &self.config
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.config.profile
    }

    /// Octets `protect_rtp` adds to a packet.
    pub fn srtp_overhead(&self) -> usize {
        self.config.profile.srtp_overhead(self.config.mki.len())
    }

    /// Octets `protect_rtcp` adds to a packet.
    pub fn srtcp_overhead(&self) -> usize {
        self.config.profile.srtcp_overhead(self.config.mki.len())
    }

    /// Adds a stream for `ssrc` whose first packets carry rollover counter `roc` (the ROC a MIKEY
    /// message announces when joining a running stream). Replaces an existing stream's state.
    pub fn add_stream(&mut self, ssrc: Ssrc, roc: Roc) -> Result<(), SrtpError> {
        let stream = Stream::new(ssrc.0, roc.0, self.config.replay_window);
        if let Some(&i) = self.by_ssrc.get(&ssrc.0) {
            self.streams[i] = stream;
            return Ok(());
        }
        self.insert(stream).map(|_| ())
    }

    /// Forgets the stream of `ssrc` (a BYE, or an SSRC change). Returns whether it existed.
    pub fn remove_stream(&mut self, ssrc: Ssrc) -> bool {
        let Some(i) = self.by_ssrc.remove(&ssrc.0) else {
            return false;
        };
        self.streams.swap_remove(i);
        if let Some(moved) = self.streams.get(i) {
            self.by_ssrc.insert(moved.ssrc, i);
        }
        self.last = 0;
        true
    }

    /// Number of streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Where the stream of `ssrc` stands (no secrets).
    pub fn stream_state(&self, ssrc: Ssrc) -> Option<StreamState> {
        let s = &self.streams[*self.by_ssrc.get(&ssrc.0)?];
        Some(StreamState {
            ssrc,
            tx_roc: s.tx.top().map(|t| Roc((t >> 16) as u32)),
            tx_seq: s.tx.top().map(|t| SeqNo(t as u16)),
            rx_roc: s.rx.top().map(|t| Roc((t >> 16) as u32)),
            rx_seq: s.rx.top().map(|t| SeqNo(t as u16)),
            srtcp_tx_next: s.srtcp_tx_next,
        })
    }

    /// The re-key signal: how close the master key is to the RFC 3711 §9.2 limits. Packets are
    /// counted on both protect and successful unprotect (the key was used either way).
    pub fn key_status(&self) -> KeyStatus {
        if self.srtp_packets >= SRTP_PACKET_LIMIT || self.srtcp_packets >= SRTCP_PACKET_LIMIT {
            KeyStatus::Exhausted
        } else if self.srtp_packets >= SRTP_PACKET_LIMIT - REKEY_MARGIN
            || self.srtcp_packets >= SRTCP_PACKET_LIMIT - REKEY_MARGIN
        {
            KeyStatus::RekeySoon
        } else {
            KeyStatus::Fresh
        }
    }

    /// SRTP and SRTCP packets processed under this master key so far.
    pub fn packets_processed(&self) -> (u64, u64) {
        (self.srtp_packets, self.srtcp_packets)
    }

    fn insert(&mut self, stream: Stream) -> Result<usize, SrtpError> {
        if self.streams.len() >= self.config.max_streams {
            return Err(SrtpError::StreamLimit(self.config.max_streams));
        }
        let i = self.streams.len();
        self.by_ssrc.insert(stream.ssrc, i);
        self.streams.push(stream);
        Ok(i)
    }

    #[inline]
    fn find(&mut self, ssrc: u32) -> Option<usize> {
        if self.streams.get(self.last).is_some_and(|s| s.ssrc == ssrc) {
            return Some(self.last);
        }
        let i = *self.by_ssrc.get(&ssrc)?;
        self.last = i;
        Some(i)
    }

    /// The stream to send on, created on demand.
    fn tx_stream(&mut self, ssrc: u32) -> Result<usize, SrtpError> {
        match self.find(ssrc) {
            Some(i) => Ok(i),
            None if self.config.accept_unknown_ssrc => {
                let i = self.insert(Stream::new(ssrc, 0, self.config.replay_window))?;
                self.last = i;
                Ok(i)
            }
            None => Err(SrtpError::UnknownSsrc(Ssrc(ssrc))),
        }
    }

    /// The receiving stream if it exists; otherwise checks that one may be created after the
    /// packet authenticates.
    fn rx_stream(&mut self, ssrc: u32) -> Result<Option<usize>, SrtpError> {
        match self.find(ssrc) {
            Some(i) => Ok(Some(i)),
            None if !self.config.accept_unknown_ssrc => Err(SrtpError::UnknownSsrc(Ssrc(ssrc))),
            None if self.streams.len() >= self.config.max_streams => {
                Err(SrtpError::StreamLimit(self.config.max_streams))
            }
            None => Ok(None),
        }
    }

    fn commit_new_rx(&mut self, ssrc: u32) -> usize {
        let stream = Stream::new(ssrc, 0, self.config.replay_window);
        // Invariant: rx_stream checked the bound before the packet was processed.
        let i = self
            .insert(stream)
            .expect("stream bound checked before authentication");
        self.last = i;
        i
    }

    /// Protects the RTP packet `buf[..len]` in place (RFC 3711 §3.3; RFC 7714 §8); `buf` must
    /// have [`srtp_overhead`](Self::srtp_overhead) spare octets after it. Returns the SRTP length.
    ///
    /// The packet index comes from the RTP sequence number with the sender's rollover counter
    /// (§3.3.1): send sequence numbers in order, wrapping at 65535. Sending an index twice is
    /// refused ([`SrtpError::IndexReuse`]): it would reuse keystream.
    pub fn protect_rtp_slice(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf
            .get(..len)
            .ok_or(SrtpError::BufferTooSmall { needed: len })?;
        let hdr = rtp_header_len(pkt)?;
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let profile = self.config.profile;
        let needed = len + profile.srtp_overhead(self.config.mki.len());
        if buf.len() < needed {
            return Err(SrtpError::BufferTooSmall { needed });
        }
        if self.srtp_packets >= SRTP_PACKET_LIMIT {
            return Err(SrtpError::KeyLimitReached);
        }
        let i = self.tx_stream(ssrc)?;
        let stream = &mut self.streams[i];
        let index = estimate_index(stream.tx.top(), stream.initial_roc, seq)?;
        stream.tx.check(index).map_err(|_| SrtpError::IndexReuse)?;
        let out = self.rtp.protect_rtp(
            buf,
            len,
            hdr,
            ssrc,
            index,
            profile.srtp_tag_len(),
            &self.config.mki,
        );
        stream.tx.update(index);
        self.srtp_packets += 1;
        Ok(out)
    }

    /// Protects the RTP packet in `pkt` in place, growing it by the trailer (no allocation when
    /// its capacity already has room).
    pub fn protect_rtp(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let overhead = self.srtp_overhead();
        grow_and_protect(pkt, overhead, |buf, len| self.protect_rtp_slice(buf, len))
    }

    /// Verifies, replay-checks and decrypts the SRTP packet `buf` in place (RFC 3711 §3.3;
    /// RFC 7714 §8). Returns the length of the RTP packet now at the start of `buf`.
    pub fn unprotect_rtp_slice(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let profile = self.config.profile;
        let mki_len = self.config.mki.len();
        let tag_len = profile.srtp_tag_len();
        let trailer = tag_len + mki_len;
        if buf.len() < 12 + trailer {
            return Err(SrtpError::TooShort);
        }
        let body = buf.len() - trailer;
        let hdr = rtp_header_len(&buf[..body])?;
        // RFC 3711 Figure 1: ... payload | MKI | tag. RFC 7714 Figure 1: ... ciphertext | tag | MKI.
        let (mki_at, tag_at) = if profile.is_aead() {
            (body + tag_len, body)
        } else {
            (body, body + mki_len)
        };
        if buf[mki_at..mki_at + mki_len] != self.config.mki[..] {
            return Err(SrtpError::UnknownMki);
        }
        let mut tag = [0u8; 16];
        tag[..tag_len].copy_from_slice(&buf[tag_at..tag_at + tag_len]);
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if self.srtp_packets >= SRTP_PACKET_LIMIT {
            return Err(SrtpError::KeyLimitReached);
        }
        let found = self.rx_stream(ssrc)?;
        // §3.3 steps 2–3: index estimate and replay check before any crypto.
        let index = match found {
            Some(i) => {
                let s = &self.streams[i];
                let index = estimate_index(s.rx.top(), s.initial_roc, seq)?;
                s.rx.check(index)?;
                index
            }
            None => estimate_index(None, 0, seq)?,
        };
        self.rtp
            .unprotect_rtp(buf, body, hdr, ssrc, index, &tag[..tag_len])?;
        // §3.3.1 / §3.3.2: only an authenticated packet updates ROC, s_l and the window.
        let i = match found {
            Some(i) => i,
            None => self.commit_new_rx(ssrc),
        };
        self.streams[i].rx.update(index);
        self.srtp_packets += 1;
        Ok(body)
    }

    /// Verifies and decrypts the SRTP packet in `pkt` in place, shrinking it to the RTP packet.
    pub fn unprotect_rtp(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let n = self.unprotect_rtp_slice(pkt)?;
        pkt.truncate(n);
        Ok(())
    }

    /// Protects the RTCP packet (compound or not) `buf[..len]` in place with encryption on
    /// (E = 1; RFC 3711 §3.4; RFC 7714 §9); `buf` must have
    /// [`srtcp_overhead`](Self::srtcp_overhead) spare octets. Returns the SRTCP length.
    pub fn protect_rtcp_slice(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf
            .get(..len)
            .ok_or(SrtpError::BufferTooSmall { needed: len })?;
        let ssrc = check_rtcp_header(pkt)?;
        let profile = self.config.profile;
        let needed = len + profile.srtcp_overhead(self.config.mki.len());
        if buf.len() < needed {
            return Err(SrtpError::BufferTooSmall { needed });
        }
        if self.srtcp_packets >= SRTCP_PACKET_LIMIT {
            return Err(SrtpError::KeyLimitReached);
        }
        let i = self.tx_stream(ssrc)?;
        let index = self.streams[i].srtcp_tx_next;
        // §3.4: the 31-bit SRTCP index must not wrap under one key.
        if u64::from(index) >= SRTCP_PACKET_LIMIT {
            return Err(SrtpError::KeyLimitReached);
        }
        let out = self.rtcp.protect_rtcp(
            buf,
            len,
            ssrc,
            index,
            profile.srtcp_tag_len(),
            &self.config.mki,
        );
        // §3.4: starts at zero, incremented after each packet sent.
        self.streams[i].srtcp_tx_next = index + 1;
        self.srtcp_packets += 1;
        Ok(out)
    }

    /// Protects the RTCP packet in `pkt` in place, growing it by the trailer.
    pub fn protect_rtcp(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let overhead = self.srtcp_overhead();
        grow_and_protect(pkt, overhead, |buf, len| self.protect_rtcp_slice(buf, len))
    }

    /// Verifies, replay-checks and (when its E flag is set) decrypts the SRTCP packet `buf` in
    /// place. Returns the length of the RTCP packet now at the start of `buf`.
    pub fn unprotect_rtcp_slice(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let profile = self.config.profile;
        let mki_len = self.config.mki.len();
        let tag_len = profile.srtcp_tag_len();
        if buf.len() < 8 + 4 + tag_len + mki_len {
            return Err(SrtpError::TooShort);
        }
        let ssrc = check_rtcp_header(buf)?;
        // RFC 3711 Figure 2: body | E+index | MKI | tag. RFC 7714 §9: body | tag | E+index | MKI.
        let (body, tag_at, index_at, mki_at) = if profile.is_aead() {
            let mki_at = buf.len() - mki_len;
            let index_at = mki_at - 4;
            (index_at - tag_len, index_at - tag_len, index_at, mki_at)
        } else {
            let tag_at = buf.len() - tag_len;
            let mki_at = tag_at - mki_len;
            (mki_at - 4, tag_at, mki_at - 4, mki_at)
        };
        if buf[mki_at..mki_at + mki_len] != self.config.mki[..] {
            return Err(SrtpError::UnknownMki);
        }
        let mut tag = [0u8; 16];
        tag[..tag_len].copy_from_slice(&buf[tag_at..tag_at + tag_len]);
        let e_index = u32::from_be_bytes([
            buf[index_at],
            buf[index_at + 1],
            buf[index_at + 2],
            buf[index_at + 3],
        ]);
        let index = u64::from(e_index & 0x7FFF_FFFF);
        if self.srtcp_packets >= SRTCP_PACKET_LIMIT {
            return Err(SrtpError::KeyLimitReached);
        }
        let found = self.rx_stream(ssrc)?;
        if let Some(i) = found {
            // §3.4 / §3.3.2: replay check on the explicit SRTCP index, before any crypto.
            self.streams[i].srtcp_rx.check(index)?;
        }
        self.rtcp
            .unprotect_rtcp(buf, body, ssrc, e_index, &tag[..tag_len], index_at)?;
        let i = match found {
            Some(i) => i,
            None => self.commit_new_rx(ssrc),
        };
        self.streams[i].srtcp_rx.update(index);
        self.srtcp_packets += 1;
        Ok(body)
    }

    /// Verifies and decrypts the SRTCP packet in `pkt` in place, shrinking it to the RTCP packet.
    pub fn unprotect_rtcp(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let n = self.unprotect_rtcp_slice(pkt)?;
        pkt.truncate(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

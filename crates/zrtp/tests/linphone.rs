//! Interop with a real Linphone: Debian's `linphonec` (liblinphone 5.1, libbzrtp 5.1) against our
//! engine, directly over UDP on 127.0.0.1 (no sipd). A minimal SIP UA in the test places or takes
//! the call with an SDP carrying `a=zrtp-hash`; on the negotiated RTP port one socket carries ZRTP
//! (magic cookie) and SRTP. Checked, both call directions:
//!
//! - our engine goes secure, and its SAS is the one linphonec prints ("auth token is …");
//! - linphonec's `a=zrtp-hash` is the hash of the Hello it sends (the engine's §8.1 check ran);
//! - ≥ 10 of linphonec's SRTP packets authenticate and decrypt with our keys, and carry the tone
//!   linphonec plays from a file;
//! - ours are accepted: linphonec, recording to a file, records the tone we sent.
//!
//! linphonec runs headless with `soundcard use files` (no sound card needed), its own HOME and
//! config in a temp dir, and is killed when the test ends however it ends.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaincall_identity::Randomness;
use chaincall_io::Output;
use chaincall_sip::message::{Message, MessageBuf, response_to};
use chaincall_sip::sdp::{Media, Sdp};
use chaincall_sip::{HeaderName, Method};
use chaincall_srtp::SrtpSession;
use chaincall_testkit::linphonec::auth_token;
use chaincall_zrtp::{
    AuthTag, Event, InMemoryCache, KeyAgreement, MessageType, Role, SasType, SecureOn, Zid, Zrtp,
    ZrtpConfig, wire,
};

/// One call from INVITE to the checks (about 2 s here). With linphonec's start-up and hang-up
/// bounds, one test stays under 20 s, so the three stay under 60 s even run one after another.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// Tone frequencies: ours (heard by linphonec) and the one linphonec plays to us.
const OUR_TONE_HZ: f64 = 1000.0;
const THEIR_TONE_HZ: f64 = 440.0;

// ---------------------------------------------------------------------------------------------
// linphonec

/// linphonec (the testkit's) with its temp HOME and the SIP port it listens on.
struct Linphonec {
    lp: chaincall_testkit::linphonec::Linphonec,
    sip_port: u16,
    /// Kept for linphonec's lifetime; declared after `lp`, so linphonec is killed first.
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Linphonec {
    type Target = chaincall_testkit::linphonec::Linphonec;
    fn deref(&self) -> &Self::Target {
        &self.lp
    }
}

impl std::ops::DerefMut for Linphonec {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.lp
    }
}

/// What linphonec offers in ZRTP (its `[sip] zrtp_*_suites` keys); `None`: its defaults.
struct Suites {
    sas: Option<&'static str>,
    auth: Option<&'static str>,
}

impl Linphonec {
    fn start(bin: &Path, suites: &Suites) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sip_port = chaincall_testkit::free_udp_port();
        let rtp_port = chaincall_testkit::free_udp_port();
        let mut rc = format!(
            "[sip]\nsip_port={sip_port}\nsip_tcp_port=0\nsip_tls_port=0\nguess_hostname=0\n\
             contact=sip:linphone@127.0.0.1\nbind_address=127.0.0.1\n\
             media_encryption=zrtp\nmedia_encryption_mandatory=1\n\
             register_only_when_network_is_up=0\ninc_timeout=60\n\
             [rtp]\naudio_rtp_port={rtp_port}\n\
             [net]\nfirewall_policy=0\n\
             [sound]\nechocancellation=0\n"
        );
        let mut sip_extra = String::new();
        if let Some(sas) = suites.sas {
            sip_extra.push_str(&format!("zrtp_sas_suites={sas}\n"));
        }
        if let Some(auth) = suites.auth {
            sip_extra.push_str(&format!("zrtp_auth_suites={auth}\n"));
        }
        rc = rc.replacen("[rtp]\n", &format!("{sip_extra}[rtp]\n"), 1);
        write_wav(&dir.path().join("play.wav"), THEIR_TONE_HZ, 8000 * 10);
        let mut lp = Self {
            lp: chaincall_testkit::linphonec::Linphonec::spawn(bin, dir.path(), &rc),
            sip_port,
            _dir: dir,
        };
        let play = lp.path("play.wav");
        let record = lp.path("record.wav");
        lp.wait_listening();
        lp.command("soundcard use files");
        lp.command(&format!("play {}", play.display()));
        lp.command(&format!("record {}", record.display()));
        lp
    }

    /// Waits until linphonec listens on its SIP port (`ports` prints 0 until it does).
    fn wait_listening(&mut self) {
        let end = Instant::now() + Duration::from_secs(4);
        let want = format!("sip port = {}", self.sip_port);
        while Instant::now() < end {
            self.command("ports");
            if self
                .wait_for("sip port =", Duration::from_secs(2))
                .contains(&want)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "linphonec does not listen on {want}; log tail:\n{}",
            self.log_tail()
        );
    }

    fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip_port))
    }
}

// ---------------------------------------------------------------------------------------------
// audio

/// G.711 µ-law of a 16-bit linear sample (ITU-T G.711, the classic segment encoder).
fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = (s + BIAS).min(0x7FFF);
    let exponent = (0..8).rev().find(|e| s & (0x80 << e) != 0).unwrap_or(0);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// The linear sample of a µ-law octet.
fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let s = if u & 0x80 != 0 { -magnitude } else { magnitude };
    s as i16
}

fn tone(hz: f64, n: usize) -> i16 {
    (8000.0 * (2.0 * std::f64::consts::PI * hz * n as f64 / 8000.0).sin()) as i16
}

/// A mono 16-bit 8 kHz WAV of a tone.
fn write_wav(path: &Path, hz: f64, samples: usize) {
    let data_len = (samples * 2) as u32;
    let mut w = Vec::with_capacity(44 + samples * 2);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..samples {
        w.extend_from_slice(&tone(hz, n).to_le_bytes());
    }
    std::fs::write(path, w).expect("write wav");
}

/// The samples of a WAV file's `data` chunk (16-bit PCM), and its sample rate.
fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF",
        "not a WAV file"
    );
    let (mut at, mut rate, mut samples) = (12, 0, Vec::new());
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " && body.len() >= 8 {
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
        } else if id == b"data" {
            samples = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        at += 8 + len + (len & 1);
    }
    (samples, rate)
}

/// How much of `samples` (at `rate`) is a tone of `hz`: the Goertzel power at `hz` over the total
/// power, in [0, 1]; silence gives 0.
fn tone_share(samples: &[i16], rate: u32, hz: f64) -> f64 {
    let x: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
    let total: f64 = x.iter().map(|v| v * v).sum();
    if total == 0.0 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
    let (re, im) = x.iter().enumerate().fold((0.0, 0.0), |(re, im), (n, v)| {
        (re + v * (w * n as f64).cos(), im + v * (w * n as f64).sin())
    });
    // A pure tone puts N/2 of its power in the bin.
    (re * re + im * im) / (total * x.len() as f64 / 2.0)
}

/// A PCMU RTP packet of our tone.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    let start = usize::from(seq) * 160;
    p.extend((start..start + 160).map(|n| ulaw(tone(OUR_TONE_HZ, n))));
    p
}

// ---------------------------------------------------------------------------------------------
// SIP

/// Our side of the call: the SIP socket, the media socket and the ZRTP engine.
struct Probe {
    sip: UdpSocket,
    media: UdpSocket,
    ssrc: u32,
    /// Drop the HelloACKs we send, as a lossy path would: linphonec's Hello is then only
    /// acknowledged by our Commit (RFC 6189 §4.1), so it cannot commit first and our engine is
    /// the initiator, whatever the hvi values.
    lose_hello_acks: bool,
}

impl Probe {
    fn new() -> Self {
        let sip = UdpSocket::bind("127.0.0.1:0").expect("bind SIP");
        let media = UdpSocket::bind("127.0.0.1:0").expect("bind media");
        sip.set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        media
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        Self {
            sip,
            media,
            ssrc: u32::from_be_bytes(Randomness::os().bytes::<4>()),
            lose_hello_acks: false,
        }
    }

    fn sip_port(&self) -> u16 {
        self.sip.local_addr().expect("bound").port()
    }

    fn engine(&self, role: Role, peer_hash: Option<[u8; 32]>) -> Zrtp {
        let mut cfg = ZrtpConfig::new(
            Zid(Randomness::os().bytes::<12>()),
            self.ssrc,
            Arc::new(InMemoryCache::new()),
        )
        // Debian's libbzrtp offers DH3k alone (its bctoolbox has no X25519): offer it after
        // the elliptic curves, as a phone that talks to Linphone would.
        .with_key_agreements(&[KeyAgreement::X255, KeyAgreement::Ec25, KeyAgreement::Dh3k])
        .with_handshake_timeout(Duration::from_secs(8));
        if let Some(hash) = peer_hash {
            cfg = cfg.with_peer_hello_hash(hash);
        }
        Zrtp::new(cfg, role, Instant::now()).expect("valid config")
    }

    /// Our SDP: PCMU on the media socket, with our Hello's hash.
    fn sdp(&self, engine: &Zrtp) -> String {
        let mut sdp = Sdp::new("probe", 1, "127.0.0.1");
        let port = self.media.local_addr().expect("bound").port();
        let mut m = Media::new("audio", port, "RTP/AVP", &["0"]);
        m.push_attr("rtpmap", Some("0 PCMU/8000"));
        m.push_attr("zrtp-hash", Some(&engine.zrtp_hash_attribute()));
        m.push_attr("sendrecv", None);
        sdp.media.push(m);
        sdp.to_string_crlf()
    }

    fn send_sip(&self, msg: &MessageBuf, to: SocketAddr) {
        self.sip.send_to(&msg.to_bytes(), to).expect("send SIP");
    }

    fn recv_sip(&self) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; 8192];
        match self.sip.recv_from(&mut buf) {
            Ok((n, from)) => {
                buf.truncate(n);
                Some((buf, from))
            }
            Err(_) => None,
        }
    }
}

/// The media address and `a=zrtp-hash` of linphonec's SDP.
fn peer_media(body: &[u8]) -> (SocketAddr, [u8; 32]) {
    let sdp = Sdp::parse(body).expect("linphonec's SDP parses");
    let m = sdp
        .media
        .iter()
        .find(|m| m.media == "audio")
        .expect("an audio stream");
    let addr = m
        .connections
        .first()
        .or(sdp.connection.as_ref())
        .expect("c=")
        .address
        .clone();
    let hash = m
        .attribute("zrtp-hash")
        .chain(sdp.attribute("zrtp-hash"))
        .flatten()
        .next()
        .unwrap_or_else(|| {
            panic!(
                "no a=zrtp-hash in linphonec's SDP:\n{}",
                sdp.to_string_crlf()
            )
        });
    let (version, hex_hash) = hash.split_once(' ').expect("`version hash`");
    assert_eq!(version, "1.10");
    let hash: [u8; 32] = hex::decode(hex_hash)
        .expect("hex")
        .try_into()
        .expect("32 octets");
    let ip: std::net::IpAddr = addr.parse().expect("an IP address in c=");
    // Calling out, linphonec advertises the address of its default route (here an IPv6 one, as
    // `use_ipv6=0` does not change its choice); its RTP socket listens on every address, so on
    // this host it is reached on loopback at the advertised port.
    let ip = if ip.is_loopback() {
        ip
    } else {
        std::net::Ipv4Addr::LOCALHOST.into()
    };
    (SocketAddr::new(ip, m.port), hash)
}

fn tag() -> String {
    hex::encode(Randomness::os().bytes::<6>())
}

// ---------------------------------------------------------------------------------------------
// media

/// What the media loop saw.
#[derive(Default)]
struct MediaResult {
    secure: Option<Box<SecureOn>>,
    /// linphonec's Hello, as first received.
    peer_hello: Option<Vec<u8>>,
    /// Decrypted RTP payloads from linphonec.
    decrypted: Vec<Vec<u8>>,
    /// SRTP packets from linphonec that did not unprotect.
    failed_unprotect: usize,
    /// SRTP packets we sent.
    sent: u16,
    /// Events the engine refused packets with.
    refused: Vec<String>,
}

/// Runs ZRTP and then SRTP on the media socket until linphonec printed its SAS, ≥ 10 of its
/// packets decrypted and we sent 1.5 s of tone; answers SIP requests (BYE) meanwhile.
fn run_media(
    probe: &Probe,
    lp: &mut Linphonec,
    engine: &mut Zrtp,
    peer: SocketAddr,
    end: Instant,
) -> (MediaResult, String) {
    let mut r = MediaResult::default();
    let (mut outbound, mut inbound): (Option<SrtpSession>, Option<SrtpSession>) = (None, None);
    let mut deadline: Option<Instant>;
    let mut next_rtp = Instant::now();
    let mut sas_line = None;
    let mut buf = vec![0u8; 2048];
    loop {
        // Drain the engine.
        loop {
            match engine.poll_output() {
                Output::Transmit(t) => {
                    let lost = probe.lose_hello_acks
                        && wire::decode(&t.contents)
                            .is_ok_and(|p| p.message.message_type() == MessageType::HelloAck);
                    if !lost {
                        probe.media.send_to(&t.contents, peer).expect("send ZRTP");
                    }
                }
                Output::Event(Event::SecureOn(s)) => {
                    outbound = Some(s.srtp.outbound_session().expect("outbound SRTP"));
                    inbound = Some(s.srtp.inbound_session().expect("inbound SRTP"));
                    r.secure = Some(s);
                }
                Output::Event(Event::Error(e)) => r.refused.push(e.to_string()),
                Output::Event(Event::Failed(e)) => panic!(
                    "our engine failed: {e}; refused before: {:?}; linphonec log tail:\n{}",
                    r.refused,
                    lp.log_tail()
                ),
                Output::Event(other) => panic!("unexpected event {other:?}"),
                Output::Timeout(at) => {
                    deadline = at;
                    break;
                }
            }
        }
        for line in lp.new_lines() {
            if line.contains("auth token is") {
                sas_line = Some(line);
            }
        }
        let now = Instant::now();
        assert!(
            now < end,
            "the call did not finish in time: secure {}, {} decrypted, {} failed unprotects, \
             linphonec SAS line {sas_line:?}, refused {:?}; stdout:\n{}\nlog tail:\n{}",
            r.secure.is_some(),
            r.decrypted.len(),
            r.failed_unprotect,
            r.refused,
            lp.transcript.join("\n"),
            lp.log_tail()
        );
        if r.secure.is_some()
            && r.decrypted.len() >= 20
            && r.sent >= 75
            && let Some(line) = sas_line.take()
        {
            return (r, line);
        }
        if let Some(at) = deadline
            && now >= at
        {
            engine.handle_timeout(now);
        }
        // Our tone, every 20 ms once keyed.
        if let Some(out) = outbound.as_mut()
            && now >= next_rtp
        {
            let mut pkt = rtp(r.sent, probe.ssrc);
            out.protect_rtp(&mut pkt).expect("protect");
            probe.media.send_to(&pkt, peer).expect("send SRTP");
            r.sent += 1;
            next_rtp += Duration::from_millis(20);
        }
        let Ok((n, _)) = probe.media.recv_from(&mut buf) else {
            continue;
        };
        let d = &buf[..n];
        if wire::is_zrtp(d) {
            if r.peer_hello.is_none()
                && let Ok(p) = wire::decode(d)
                && p.message.message_type() == MessageType::Hello
            {
                r.peer_hello = Some(p.raw.to_vec());
            }
            engine.handle_input(d, Instant::now());
        } else if n >= 12 && d[0] >> 6 == 2 && !(200..=204).contains(&d[1]) {
            let Some(inb) = inbound.as_mut() else {
                continue; // RTP before we are keyed: nothing to check it with
            };
            let mut pkt = d.to_vec();
            match inb.unprotect_rtp(&mut pkt) {
                Ok(()) => r.decrypted.push(pkt[12..].to_vec()),
                Err(_) => r.failed_unprotect += 1,
            }
        }
    }
}

/// The checks both call directions share.
fn check_call(lp: &mut Linphonec, r: &MediaResult, sas_line: &str, peer_hash: [u8; 32]) {
    let secure = r.secure.as_ref().expect("secure");
    // The SAS our engine derived is the one linphonec shows its user.
    assert_eq!(
        secure.sas.text,
        auth_token(sas_line),
        "SAS differs: linphonec printed {sas_line:?}"
    );
    assert!(sas_line.contains("fully encrypted"), "{sas_line}");
    // linphonec's a=zrtp-hash is the SHA-256 of the Hello it sent (§8.1); our engine checked it.
    let hello = r.peer_hello.as_ref().expect("linphonec sent a Hello");
    use sha2::Digest;
    assert_eq!(<[u8; 32]>::from(sha2::Sha256::digest(hello)), peer_hash);
    // linphonec's SRTP decrypts with our keys and carries the tone it plays.
    assert!(r.decrypted.len() >= 10, "{} decrypted", r.decrypted.len());
    assert_eq!(r.failed_unprotect, 0, "SRTP packets that did not unprotect");
    let heard: Vec<i16> = r.decrypted.concat().into_iter().map(ulaw_decode).collect();
    let share = tone_share(&heard, 8000, THEIR_TONE_HZ);
    assert!(
        share > 0.8,
        "linphonec's tone is {share:.3} of what we decrypted"
    );

    // Hang up, let linphonec finish its recording, and check it heard our tone.
    lp.command("terminate");
    lp.wait_for("ended", Duration::from_secs(2));
    lp.quit();
    let (recorded, rate) = read_wav(&lp.path("record.wav"));
    let share = tone_share(&recorded, rate, OUR_TONE_HZ);
    assert!(
        recorded.len() as u32 >= rate && share > 0.5,
        "linphonec recorded {} samples at {rate} Hz, our tone {share:.3} of them; log tail:\n{}",
        recorded.len(),
        lp.log_tail()
    );
}

fn linphonec() -> Option<PathBuf> {
    chaincall_testkit::peer("linphonec")
}

/// We call linphonec; it answers. Our engine is an initiator by hint; linphonec commits too, so
/// unless `lose_hello_acks` holds linphonec back, whoever commits first or wins the §4.2
/// contention (the higher hvi) is the initiator.
fn we_call(bin: &Path, suites: &Suites, lose_hello_acks: bool) -> Box<SecureOn> {
    let mut lp = Linphonec::start(bin, suites);
    let mut probe = Probe::new();
    probe.lose_hello_acks = lose_hello_acks;
    let end = Instant::now() + CALL_LIMIT;
    let mut engine = probe.engine(Role::Initiator, None);
    let port = probe.sip_port();
    let (call_id, from_tag) = (format!("{}@127.0.0.1", tag()), tag());
    let target = format!("sip:linphone@127.0.0.1:{}", lp.sip_port);
    let from = format!("<sip:probe@127.0.0.1:{port}>;tag={from_tag}");
    let mut invite = MessageBuf::request(Method::Invite, &target)
        .with(
            "Via",
            format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{};rport", tag()),
        )
        .with("Max-Forwards", "70")
        .with("From", from.clone())
        .with("To", format!("<{target}>"))
        .with("Call-ID", call_id.clone())
        .with("CSeq", "1 INVITE")
        .with("Contact", format!("<sip:probe@127.0.0.1:{port}>"));
    invite.set_body("application/sdp", probe.sdp(&engine));
    probe.send_sip(&invite, lp.sip_addr());
    lp.wait_for("Receiving new incoming call", Duration::from_secs(5));
    lp.command("answer");

    // The 200 OK: linphonec's media address and Hello hash; then ACK.
    let (peer, peer_hash) = loop {
        assert!(Instant::now() < end, "no 200 OK to our INVITE");
        let Some((raw, _)) = probe.recv_sip() else {
            continue;
        };
        let msg = Message::parse(&raw).expect("linphonec's SIP parses");
        match msg.status() {
            Some(200) => {
                let to = msg.header_value(HeaderName::To).expect("To").to_owned();
                let ack = MessageBuf::request(Method::Ack, &target)
                    .with(
                        "Via",
                        format!("SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{}", tag()),
                    )
                    .with("Max-Forwards", "70")
                    .with("From", from.clone())
                    .with("To", to)
                    .with("Call-ID", call_id.clone())
                    .with("CSeq", "1 ACK");
                probe.send_sip(&ack, lp.sip_addr());
                break peer_media(msg.body());
            }
            Some(code) if code >= 300 => panic!(
                "linphonec refused the call: {}",
                String::from_utf8_lossy(&raw)
            ),
            _ => {}
        }
    };
    // The answer brings linphonec's hash after our Hello was built (and maybe after its Hello
    // arrived): the engine checks it now.
    engine.set_peer_hello_hash(peer_hash, Instant::now());
    media_and_hang_up(&probe, &mut lp, &mut engine, peer, peer_hash, end)
}

/// Runs the media, checks the call (which hangs up from linphonec) and answers its BYE.
fn media_and_hang_up(
    probe: &Probe,
    lp: &mut Linphonec,
    engine: &mut Zrtp,
    peer: SocketAddr,
    peer_hash: [u8; 32],
    end: Instant,
) -> Box<SecureOn> {
    let (r, sas_line) = run_media(probe, lp, engine, peer, end);
    let bye_by = Instant::now() + Duration::from_secs(3);
    let bye_answerer = std::thread::scope(|s| {
        let h = s.spawn(|| answer_bye(probe, bye_by));
        check_call(lp, &r, &sas_line, peer_hash);
        h.join().expect("BYE answerer")
    });
    assert!(bye_answerer, "linphonec's BYE never came");
    r.secure.expect("secure")
}

/// Answers linphonec's BYE with 200 OK; true once one was answered.
fn answer_bye(probe: &Probe, end: Instant) -> bool {
    while Instant::now() < end {
        let Some((raw, from)) = probe.recv_sip() else {
            continue;
        };
        let Ok(msg) = Message::parse(&raw) else {
            continue;
        };
        if msg.method() == Some(Method::Bye) {
            probe.send_sip(&response_to(&msg, 200, "OK", None), from);
            return true;
        }
    }
    false
}

/// linphonec calls us; we answer. Our engine waits for linphonec's Commit (Responder hint).
fn they_call(bin: &Path, suites: &Suites) -> Box<SecureOn> {
    let mut lp = Linphonec::start(bin, suites);
    let probe = Probe::new();
    let end = Instant::now() + CALL_LIMIT;
    lp.command(&format!("call sip:probe@127.0.0.1:{}", probe.sip_port()));
    let our_tag = tag();
    let (mut engine, peer, peer_hash) = loop {
        assert!(Instant::now() < end, "linphonec's INVITE never came");
        let Some((raw, from)) = probe.recv_sip() else {
            continue;
        };
        let msg = Message::parse(&raw).expect("linphonec's SIP parses");
        if msg.method() != Some(Method::Invite) {
            continue;
        }
        // The offer carries linphonec's hash before its Hello: the engine checks on arrival.
        let (peer, peer_hash) = peer_media(msg.body());
        let engine = probe.engine(Role::Responder, Some(peer_hash));
        let mut ok = response_to(&msg, 200, "OK", Some(&our_tag));
        ok.push(
            "Contact",
            format!("<sip:probe@127.0.0.1:{}>", probe.sip_port()),
        );
        ok.set_body("application/sdp", probe.sdp(&engine));
        probe.send_sip(&ok, from);
        break (engine, peer, peer_hash);
    };
    media_and_hang_up(&probe, &mut lp, &mut engine, peer, peer_hash, end)
}

const DEFAULT_SUITES: Suites = Suites {
    sas: None,
    auth: None,
};

#[test]
fn we_call_linphonec_and_our_engine_commits_as_initiator() {
    let Some(bin) = linphonec() else { return };
    let s = we_call(&bin, &DEFAULT_SUITES, true);
    assert_eq!(s.role, Role::Initiator);
    // Debian's bzrtp offers DH3k only; HS80 and B32 are both sides' first choices.
    assert_eq!(
        (s.suite.key_agreement, s.suite.auth_tag, s.suite.sas),
        (KeyAgreement::Dh3k, AuthTag::Hs80, SasType::B32)
    );
}

#[test]
fn we_call_linphonec_and_both_commit_whoever_wins_agrees() {
    let Some(bin) = linphonec() else { return };
    // Both send Commit: either the first one arrives before the other is sent, or §4.2
    // contention picks the higher hvi. Either way both sides end with the same SAS and keys.
    let s = we_call(&bin, &DEFAULT_SUITES, false);
    eprintln!("both committed; our engine ended as {:?}", s.role);
}

#[test]
fn linphonec_calls_us_commits_and_we_answer_as_responder_with_b256_and_hs32() {
    let Some(bin) = linphonec() else { return };
    let s = they_call(
        &bin,
        &Suites {
            sas: Some("MS_ZRTP_SAS_B256"),
            auth: Some("MS_ZRTP_AUTHTAG_HS32"),
        },
    );
    assert_eq!(s.role, Role::Responder);
    assert_eq!(
        (s.suite.key_agreement, s.suite.auth_tag, s.suite.sas),
        (KeyAgreement::Dh3k, AuthTag::Hs32, SasType::B256)
    );
}

//! SIP over TLS-PSK end to end on 127.0.0.1: two phones (the sip crate + the tls-psk client) run the
//! STS handshake with sipd against keys in the keystore contract (embedded chain), open TLS with the
//! PSK on the same connection, register with digest auth inside TLS, and make a call A → B that
//! reaches B over B's own connection (INVITE, 200, ACK, BYE). A revoked or unknown phone is refused
//! at the handshake; an expired PSK is refused at the TLS handshake, and so is a live one whose
//! phone's or peer domain's on-chain key was revoked or replaced since its handshake; a peer
//! domain's open link is closed when its key is revoked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use chaincall_chain::{
    ClientId, EmbeddedChain, KeystoreChain, PrivateKeySigner, dev_signer, receipt_commitment,
    receipt_hash,
};
use chaincall_handshake::{
    AlertCode, HandshakeConfig, HandshakeError, Initiator, LocalIdentity, Protocol,
};
use chaincall_identity::{IdentityKey, IdentityName};
use chaincall_sip::digest::Challenge;
use chaincall_sip::framing::{Frame, StreamFramer};
use chaincall_sip::header::HeaderName;
use chaincall_sip::message::{Message, ParseLimits, response_to};
use chaincall_sipd::config::{KeyTrustMode, PeerConfig, TlsPskSettings};
use chaincall_sipd::db::Db;
use chaincall_sipd::metrics::{HandshakeFailure, Metrics};
use chaincall_sipd::{AuthMode, ChainKeyDirectory, Config, Listen, ListenTransport, Server};
use chaincall_tls_psk::{
    TlsPskClient, TlsPskConfig, TlsPskError, TlsPskStream, connect_with_handshake,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DOMAIN: &str = "sip.example.org";
const PSK_LIFETIME: Duration = Duration::from_secs(3);
const KEY_CACHE: Duration = Duration::from_secs(1);

struct Keystore {
    chain: Arc<EmbeddedChain>,
    contract: alloy::primitives::Address,
    owner: PrivateKeySigner,
}

impl Keystore {
    async fn new() -> Keystore {
        let chain = Arc::new(EmbeddedChain::default());
        let owner = dev_signer(0);
        let contract = chain
            .deploy(&owner)
            .await
            .unwrap()
            .contract_address
            .unwrap();
        Keystore {
            chain,
            contract,
            owner,
        }
    }

    /// addClient from `wallet`, then approveClient by the owner; returns the identity.
    async fn publish(&self, name: &str, wallet: usize) -> LocalIdentity {
        let name = IdentityName::parse(name).unwrap();
        let key = IdentityKey::generate();
        let id = ClientId::of(&name);
        let from = dev_signer(wallet);
        let receipt = format!("receipt-{name}");
        let commitment = receipt_commitment(&id, from.address(), &receipt_hash(receipt.as_bytes()));
        let public = key.public();
        self.chain
            .add_client(
                self.contract,
                &from,
                id,
                public.tag(),
                &public.to_bytes(),
                commitment,
            )
            .await
            .unwrap();
        self.chain
            .approve_client(
                self.contract,
                &self.owner,
                id,
                receipt_hash(receipt.as_bytes()),
            )
            .await
            .unwrap();
        LocalIdentity::new(name, Arc::new(key))
    }

    async fn revoke(&self, name: &IdentityName) {
        self.chain
            .revoke_client(self.contract, &self.owner, ClientId::of(name))
            .await
            .unwrap();
    }

    /// The bound wallet (`wallet`, as in [`Keystore::publish`]) replaces `name`'s key.
    async fn rotate(&self, name: &IdentityName, wallet: usize) {
        let key = IdentityKey::generate().public();
        self.chain
            .rotate_key(
                self.contract,
                &dev_signer(wallet),
                ClientId::of(name),
                key.tag(),
                &key.to_bytes(),
            )
            .await
            .unwrap();
    }

    fn directory(&self) -> ChainKeyDirectory<EmbeddedChain> {
        ChainKeyDirectory::new(self.chain.clone(), self.contract)
    }
}

/// The `[tls_psk]` section built in code: no file, no TOML.
fn settings() -> TlsPskSettings {
    TlsPskSettings {
        psk_lifetime: PSK_LIFETIME,
        ..TlsPskSettings::new(
            DOMAIN.parse().unwrap(),
            "/nonexistent".into(),
            "http://127.0.0.1:1".into(),
            Address::ZERO,
        )
    }
}

/// A phone: one TLS-PSK connection to sipd, SIP framed on it.
struct Phone {
    user: String,
    local: SocketAddr,
    tls: TlsPskStream<TcpStream>,
    framer: StreamFramer,
    established: chaincall_handshake::Established,
}

async fn connect(
    ks: &Keystore,
    me: &LocalIdentity,
    server: SocketAddr,
) -> Result<Phone, TlsPskError> {
    let tcp = TcpStream::connect(server).await?;
    let local = tcp.local_addr()?;
    let dir = ks.directory();
    let initiator = Initiator::new(
        HandshakeConfig::default(),
        me.clone(),
        IdentityName::parse(DOMAIN).unwrap(),
        Protocol::Sts,
        &dir,
        Instant::now(),
    )?;
    let client = TlsPskClient::new(&TlsPskConfig::default())?;
    let (tls, established) =
        connect_with_handshake(tcp, initiator, Duration::from_secs(5), &client).await?;
    Ok(Phone {
        user: me.name().to_string(),
        local,
        tls,
        framer: StreamFramer::new(ParseLimits::default()),
        established,
    })
}

/// Reconnects with the stored PSK of `phone`'s handshake: TLS at once, no handshake.
async fn resume(phone: &Phone, server: SocketAddr) -> Result<Phone, TlsPskError> {
    let tcp = TcpStream::connect(server).await?;
    let local = tcp.local_addr()?;
    let client = TlsPskClient::new(&TlsPskConfig::default())?;
    let tls = client.connect_established(tcp, &phone.established).await?;
    Ok(Phone {
        user: phone.user.clone(),
        local,
        tls,
        framer: StreamFramer::new(ParseLimits::default()),
        established: phone.established.clone(),
    })
}

/// TLS-PSK connections refused for any of `reasons` so far.
fn refused(metrics: &Metrics, reasons: &[HandshakeFailure]) -> u64 {
    HandshakeFailure::ALL
        .iter()
        .zip(&metrics.tls_psk_failures)
        .filter(|(r, _)| reasons.contains(r))
        .map(|(_, c)| c.get())
        .sum()
}

/// Waits (at most 5 s) until sipd has counted `n` refusals for `reasons`, and not more: it counts
/// once its side of the TLS handshake ends, which may be after the client saw the refusal.
async fn until_refused(metrics: &Metrics, reasons: &[HandshakeFailure], n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while refused(metrics, reasons) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sipd counted {} {reasons:?} refusals, not {n}:\n{}",
            refused(metrics, reasons),
            metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(refused(metrics, reasons), n, "{reasons:?}");
}

impl Phone {
    async fn send(&mut self, text: &str) {
        let wire = text.replace("\r\n", "\n").replace('\n', "\r\n");
        self.tls.write_all(wire.as_bytes()).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    async fn send_buf(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// The next SIP message on the connection (within 5 s).
    async fn recv(&mut self) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 8192];
        loop {
            match self.framer.poll_frame().unwrap() {
                Some(Frame::Message(m)) => return m,
                Some(Frame::Ping) => continue,
                None => {}
            }
            let n = tokio::time::timeout_at(deadline, self.tls.read(&mut buf))
                .await
                .expect("a SIP message within 5 s")
                .unwrap();
            assert!(n > 0, "sipd closed {}'s connection", self.user);
            self.framer.push(&buf[..n]);
        }
    }

    /// Receives until a message satisfying `pred` (skipping e.g. 100 Trying).
    async fn expect(&mut self, pred: impl Fn(&Message<'_>) -> bool) -> Vec<u8> {
        loop {
            let b = self.recv().await;
            let m = Message::parse(&b).unwrap();
            if pred(&m) {
                return b;
            }
        }
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{};transport=tls>", self.user, self.local)
    }

    fn register(&self, cseq: u32, auth: &str) -> String {
        format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\n\
Via: SIP/2.0/TLS {local};branch=z9hG4bKreg{cseq}{user}\n\
Max-Forwards: 70\n\
From: <sip:{user}@{DOMAIN}>;tag=r{cseq}\n\
To: <sip:{user}@{DOMAIN}>\n\
Call-ID: reg-{user}\n\
CSeq: {cseq} REGISTER\n\
Contact: {contact}\n\
Expires: 300\n\
{auth}Content-Length: 0\n\n",
            local = self.local,
            user = self.user,
            contact = self.contact()
        )
    }

    /// REGISTER, 401, REGISTER with digest credentials, 200.
    async fn register_with_digest(&mut self, password: &str) {
        let r = self.register(1, "");
        self.send(&r).await;
        let b = self.expect(|m| m.status().is_some()).await;
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.status(), Some(401), "{}", String::from_utf8_lossy(&b));
        let header = m.auth_headers(HeaderName::WwwAuthenticate).next().unwrap();
        let ch = Challenge::parse(&header).unwrap();
        let answer = ch.answer(
            "REGISTER",
            &format!("sip:{DOMAIN}"),
            &self.user,
            password,
            "0a4f113b",
            1,
        );
        let r = self.register(2, &format!("Authorization: {answer}\n"));
        self.send(&r).await;
        let b = self.expect(|m| m.status().is_some()).await;
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.status(), Some(200), "{}", String::from_utf8_lossy(&b));
        assert_eq!(m.cseq().unwrap().seq, 2);
        let contacts: Vec<_> = m.values(HeaderName::Contact).collect();
        assert!(
            contacts
                .iter()
                .any(|c| c.contains(&self.local.to_string()) && c.contains("transport=tls")),
            "200 lists the TLS contact: {contacts:?}"
        );
    }
}

async fn start_sipd(ks: &Keystore, dir: &tempfile::TempDir) -> (SocketAddr, Server) {
    let directory = Arc::new(ks.directory().with_ttl(KEY_CACHE));
    start_sipd_with(ks, dir, directory).await
}

/// sipd looking phones up in `directory`.
async fn start_sipd_with(
    ks: &Keystore,
    dir: &tempfile::TempDir,
    directory: Arc<dyn chaincall_identity::KeyDirectory + Send + Sync>,
) -> (SocketAddr, Server) {
    start_sipd_peering(ks, dir, directory, &[]).await
}

/// sipd looking phones up in `directory`, peering with `peers` (`[peers]`: domain, recheck_secs).
/// No link identity is set, so sipd opens no links of its own: it only accepts the peers'.
async fn start_sipd_peering(
    ks: &Keystore,
    dir: &tempfile::TempDir,
    directory: Arc<dyn chaincall_identity::KeyDirectory + Send + Sync>,
    peers: &[(&str, Duration)],
) -> (SocketAddr, Server) {
    let sipd = ks.publish(DOMAIN, 1).await;
    let url = format!("sqlite://{}", dir.path().join("sub.db").display());
    let db = Db::connect(&url).await.unwrap();
    db.create_schema().await.unwrap();
    for user in ["+15551230001", "+15551230002"] {
        db.add_subscriber(user, DOMAIN, &format!("pw{user}"))
            .await
            .unwrap();
    }
    let mut cfg = Config {
        listen: vec![
            Listen::udp(([127, 0, 0, 1], 0).into()),
            Listen::tls(([127, 0, 0, 1], 0).into()),
        ],
        domain: Some(DOMAIN.into()),
        ..Config::default()
    };
    cfg.auth.mode = AuthMode::Digest;
    cfg.auth.database = url;
    for (domain, recheck) in peers {
        let peer = PeerConfig {
            recheck: *recheck,
            // Never dialled: no link identity is set.
            ..PeerConfig::new("127.0.0.1:9")
        };
        cfg.peers.insert((*domain).to_owned(), peer);
        // Required with [peers]; bind_with_tls_psk reads nothing else from it.
        cfg.tls_psk = Some(TlsPskSettings {
            trust: KeyTrustMode::Provider,
            ..settings()
        });
    }
    let key = IdentityKey::from_secret_bytes(&sipd.key().dangerous_secret_bytes()).unwrap();
    let psk = chaincall_sipd::tls::psk_server(&settings(), key, directory).unwrap();
    let server = Server::bind_with_tls_psk(cfg, psk, Arc::default())
        .await
        .unwrap();
    let tls = server
        .local()
        .iter()
        .find(|l| l.transport == ListenTransport::Tls)
        .unwrap()
        .addr;
    (tls, server)
}

fn header<'a>(m: &'a Message<'_>, name: HeaderName<'_>) -> &'a str {
    m.header_value(name).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_register_and_call_over_tls_psk_keyed_on_chain() {
    let ks = Keystore::new().await;
    let alice = ks.publish("+15551230001", 2).await;
    let bob = ks.publish("+15551230002", 3).await;
    let dir = tempfile::tempdir().unwrap();
    let (tls_addr, server) = start_sipd(&ks, &dir).await;
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let mut a = connect(&ks, &alice, tls_addr)
        .await
        .expect("alice connects");
    let mut b = connect(&ks, &bob, tls_addr).await.expect("bob connects");
    assert_eq!(a.tls.version(), "TLSv1.3");
    assert_eq!(a.established.peer.to_string(), DOMAIN);
    a.register_with_digest("pw+15551230001").await;
    b.register_with_digest("pw+15551230002").await;

    // The handshake identity binds the AOR: alice's connection cannot register bob's number, even
    // before any digest exchange.
    let spoof = a
        .register(7, "")
        .replace("sip:+15551230001@", "sip:+15551230002@");
    a.send(&spoof).await;
    let b403 = a.expect(|m| m.status().is_some()).await;
    assert_eq!(
        Message::parse(&b403).unwrap().status(),
        Some(403),
        "{}",
        String::from_utf8_lossy(&b403)
    );

    // A calls B by number; sipd challenges the INVITE (407) first.
    let (a_local, a_contact) = (a.local, a.contact());
    let invite = |cseq: u32, auth: &str| {
        format!(
            "INVITE sip:+15551230002@{DOMAIN} SIP/2.0\n\
Via: SIP/2.0/TLS {local};branch=z9hG4bKinv{cseq}\n\
Max-Forwards: 70\n\
From: <sip:+15551230001@{DOMAIN}>;tag=alice1\n\
To: <sip:+15551230002@{DOMAIN}>\n\
Call-ID: call-ab\n\
CSeq: {cseq} INVITE\n\
Contact: {contact}\n\
{auth}Content-Type: application/sdp\n\
Content-Length: 0\n\n",
            local = a_local,
            contact = a_contact
        )
    };
    a.send(&invite(1, "")).await;
    let r = a.expect(|m| m.status().is_some_and(|s| s >= 200)).await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(407), "{}", String::from_utf8_lossy(&r));
    let to_407 = header(&m, HeaderName::To).to_owned();
    let ch = Challenge::parse(
        &m.auth_headers(HeaderName::ProxyAuthenticate)
            .next()
            .unwrap(),
    )
    .unwrap();
    let answer = ch.answer(
        "INVITE",
        &format!("sip:+15551230002@{DOMAIN}"),
        "+15551230001",
        "pw+15551230001",
        "c1",
        1,
    );
    // ACK for the 407 (same branch: it belongs to the INVITE's transaction, §17.1.1.3).
    a.send(&format!(
        "ACK sip:+15551230002@{DOMAIN} SIP/2.0\n\
Via: SIP/2.0/TLS {local};branch=z9hG4bKinv1\n\
Max-Forwards: 70\n\
From: <sip:+15551230001@{DOMAIN}>;tag=alice1\n\
To: {to_407}\n\
Call-ID: call-ab\n\
CSeq: 1 ACK\n\
Content-Length: 0\n\n",
        local = a.local
    ))
    .await;
    a.send(&invite(2, &format!("Proxy-Authorization: {answer}\n")))
        .await;

    // B gets the INVITE over its own TLS connection, addressed to its registered contact.
    let inv = b.expect(|m| m.method().is_some()).await;
    let m = Message::parse(&inv).unwrap();
    assert_eq!(m.method().map(|m| m.as_str()), Some("INVITE"));
    assert_eq!(
        m.request_uri(),
        Some(format!("sip:+15551230002@{};transport=tls", b.local).as_str())
    );
    let top = m.top_via().unwrap();
    assert_eq!(top.transport, "TLS", "sipd's Via names TLS");
    assert_eq!(
        format!("{}:{}", top.host, top.port.unwrap()),
        tls_addr.to_string(),
        "sent-by is the TLS listener"
    );
    let rr: Vec<_> = m.record_routes().map(|r| r.uri.to_owned()).collect();
    // One value per leg, each with its connection's flow token (RFC 5626 §5.3): B's on top.
    assert_eq!(rr.len(), 2, "{rr:?}");
    let tokens: Vec<&str> = rr
        .iter()
        .map(|r| {
            let (token, rest) = r
                .strip_prefix("sip:")
                .and_then(|r| r.split_once('@'))
                .expect("a flow token");
            assert_eq!(rest, format!("{tls_addr};lr;transport=tls"));
            assert_eq!(token.len(), 48);
            token
        })
        .collect();
    assert_ne!(tokens[0], tokens[1], "each leg names its own connection");
    assert_eq!(m.vias().count(), 2, "sipd's Via above A's");

    // B answers 200 with its contact; A gets it over its connection.
    let mut ok = response_to(&m, 200, "OK", Some("bob1"));
    ok.push("Contact", b.contact());
    ok.push("Content-Length", "0");
    b.send_buf(&ok.to_bytes()).await;
    let r = a.expect(|m| m.status().is_some_and(|s| s >= 200)).await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(200), "{}", String::from_utf8_lossy(&r));
    assert_eq!(m.vias().count(), 1, "sipd removed its Via");
    let to_200 = header(&m, HeaderName::To).to_owned();
    assert!(to_200.contains("tag=bob1"));
    // A's route set is the Record-Route list reversed (§12.1.2): A's leg first, B's last.
    let mut route = m
        .record_routes()
        .map(|r| format!("<{}>", r.uri))
        .collect::<Vec<_>>();
    route.reverse();
    let route = route.join(", ");
    let b_contact = format!("sip:+15551230002@{};transport=tls", b.local);

    // ACK and BYE follow the route set through sipd to B's connection (§12.2.1.1).
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} {b_contact} SIP/2.0\n\
Via: SIP/2.0/TLS {local};branch=z9hG4bK{branch}\n\
Max-Forwards: 70\n\
Route: {route}\n\
From: <sip:+15551230001@{DOMAIN}>;tag=alice1\n\
To: {to_200}\n\
Call-ID: call-ab\n\
CSeq: {cseq} {method}\n\
Content-Length: 0\n\n",
            local = a_local
        )
    };
    a.send(&in_dialog("ACK", 2, "ack2")).await;
    let ack = b.expect(|m| m.method().is_some()).await;
    let m = Message::parse(&ack).unwrap();
    assert_eq!(m.method().map(|m| m.as_str()), Some("ACK"));
    assert_eq!(m.top_via().unwrap().transport, "TLS");
    assert_eq!(m.routes().count(), 0, "sipd popped its Route");

    a.send(&in_dialog("BYE", 3, "bye3")).await;
    let bye = b.expect(|m| m.method().is_some()).await;
    let m = Message::parse(&bye).unwrap();
    assert_eq!(m.method().map(|m| m.as_str()), Some("BYE"));
    assert_eq!(m.top_via().unwrap().transport, "TLS");
    let mut ok = response_to(&m, 200, "OK", None);
    ok.push("Content-Length", "0");
    b.send_buf(&ok.to_bytes()).await;
    let r = a.expect(|m| m.status().is_some_and(|s| s >= 200)).await;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.cseq().unwrap().method.as_str(), "BYE");

    // The registrations gauge follows every REGISTER; wait until the server loop handled both.
    let deadline = Instant::now() + Duration::from_secs(3);
    while metrics.registrations.get() != 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metrics.registrations.get(), 2);
    assert_eq!(metrics.connections.get(), 2);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_unknown_phones_and_expired_psks_are_refused() {
    let ks = Keystore::new().await;
    let alice = ks.publish("+15551230001", 2).await;
    let carol = ks.publish("+15551230003", 4).await;
    // Dave's key was never put on chain.
    let dave = LocalIdentity::new(
        IdentityName::parse("+15551230004").unwrap(),
        Arc::new(IdentityKey::generate()),
    );
    let dir = tempfile::tempdir().unwrap();
    let (tls_addr, server) = start_sipd(&ks, &dir).await;
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // Carol connects while approved; after her key is revoked on chain she is refused.
    let carol_ok = connect(&ks, &carol, tls_addr).await;
    assert!(carol_ok.is_ok(), "carol approved: {:?}", carol_ok.err());
    ks.revoke(carol.name()).await;
    // sipd caches keystore answers for KEY_CACHE: the revocation counts once that has passed.
    tokio::time::sleep(KEY_CACHE + Duration::from_millis(100)).await;
    for (who, phone) in [("revoked", &carol), ("unknown", &dave)] {
        match connect(&ks, phone, tls_addr).await {
            Err(TlsPskError::Handshake(HandshakeError::PeerAborted(
                AlertCode::UnknownIdentity,
            ))) => {}
            Err(other) => panic!("{who} phone: expected an unknown-identity refusal, got {other}"),
            Ok(_) => panic!("the {who} phone got a PSK"),
        }
    }

    // Alice's PSK works for a second connection while live, and is refused once expired.
    let mut a = connect(&ks, &alice, tls_addr)
        .await
        .expect("alice connects");
    a.register_with_digest("pw+15551230001").await;
    let est = a.established.clone();
    let client = TlsPskClient::new(&TlsPskConfig::default()).unwrap();
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let again = client.connect_established(tcp, &est).await;
    assert!(again.is_ok(), "live PSK reconnects: {:?}", again.err());
    tokio::time::sleep(PSK_LIFETIME + Duration::from_millis(300)).await;
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let offered = client
        .connect(
            tcp,
            est.identity.to_hex().as_bytes(),
            est.psk.dangerous_as_bytes(),
        )
        .await;
    assert!(offered.is_err(), "an expired PSK must not open TLS");
    assert!(matches!(
        client
            .connect_established(TcpStream::connect(tls_addr).await.unwrap(), &est)
            .await,
        Err(TlsPskError::LocalPskExpired)
    ));
    // The live connection of the expired PSK keeps working (expiry limits new connections).
    a.send(&a.register(3, "")).await;
    let b = a.expect(|m| m.status().is_some()).await;
    assert_eq!(Message::parse(&b).unwrap().status(), Some(401));
    assert!(metrics.connections.get() >= 1);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// An RPC provider that lies about one entry: `getClient` for `id` answers `key` as approved.
/// Everything else, proofs and headers included, is the real chain's.
struct LyingProvider {
    chain: Arc<EmbeddedChain>,
    id: ClientId,
    key: Vec<u8>,
    /// Once set, `getClient` never answers (a node that hangs).
    hang: std::sync::atomic::AtomicBool,
}

impl KeystoreChain for LyingProvider {
    fn chain_id(&self) -> u64 {
        self.chain.chain_id()
    }
    async fn block_number(&self) -> chaincall_chain::Result<u64> {
        self.chain.block_number().await
    }
    async fn send(
        &self,
        from: &PrivateKeySigner,
        to: Option<alloy::primitives::Address>,
        input: alloy::primitives::Bytes,
        value: alloy::primitives::U256,
    ) -> chaincall_chain::Result<chaincall_chain::TxOutcome> {
        self.chain.send(from, to, input, value).await
    }
    async fn call(
        &self,
        to: alloy::primitives::Address,
        input: alloy::primitives::Bytes,
    ) -> chaincall_chain::Result<alloy::primitives::Bytes> {
        self.chain.call(to, input).await
    }
    async fn logs(
        &self,
        contract: alloy::primitives::Address,
        id: ClientId,
    ) -> chaincall_chain::Result<Vec<chaincall_chain::HistoryEvent>> {
        self.chain.logs(contract, id).await
    }
    async fn storage_at(
        &self,
        address: alloy::primitives::Address,
        slot: alloy::primitives::U256,
    ) -> chaincall_chain::Result<alloy::primitives::U256> {
        self.chain.storage_at(address, slot).await
    }
    async fn balance(
        &self,
        address: alloy::primitives::Address,
    ) -> chaincall_chain::Result<alloy::primitives::U256> {
        self.chain.balance(address).await
    }
    async fn get_proof(
        &self,
        address: alloy::primitives::Address,
        slots: &[alloy::primitives::B256],
        block: u64,
    ) -> chaincall_chain::Result<alloy::rpc::types::EIP1186AccountProofResponse> {
        self.chain.get_proof(address, slots, block).await
    }
    async fn block_header(&self, number: u64) -> chaincall_chain::Result<alloy::consensus::Header> {
        self.chain.block_header(number).await
    }
    async fn code_at(
        &self,
        address: alloy::primitives::Address,
    ) -> chaincall_chain::Result<alloy::primitives::Bytes> {
        self.chain.code_at(address).await
    }
    async fn get_client(
        &self,
        contract: alloy::primitives::Address,
        id: ClientId,
    ) -> chaincall_chain::Result<chaincall_chain::ClientEntry> {
        if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let mut entry = self.chain.get_client(contract, id).await?;
        if id == self.id {
            entry.key = self.key.clone().into();
        }
        Ok(entry)
    }
}

/// sipd's phone keys come from verified look-ups: a provider that answers `getClient` with
/// Mallory's key for Alice's number does not let Mallory in as Alice once sipd proves the entry
/// against a trusted header (here a checkpoint at the genesis block). Believing the provider
/// (`trust = "provider"`) would let her in, which the first half shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_chain_proof_does_not_show_is_refused() {
    for verified in [false, true] {
        let ks = Keystore::new().await;
        let alice = ks.publish("+15551230001", 2).await;
        // Mallory holds her own key and claims Alice's number.
        let mallory = LocalIdentity::new(alice.name().clone(), Arc::new(IdentityKey::generate()));
        let lying = Arc::new(LyingProvider {
            chain: ks.chain.clone(),
            id: ClientId::of(alice.name()),
            key: mallory.key().public().to_bytes().to_vec(),
            hang: Default::default(),
        });
        let genesis = ks.chain.block_header(0).await.unwrap().hash_slow();
        let mut directory = ChainKeyDirectory::new(lying.clone(), ks.contract);
        if verified {
            directory = directory.with_header_trust(Arc::new(
                chaincall_chain::verified::HeaderTrust::checkpoint(0, genesis),
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let (tls_addr, server) = start_sipd_with(&ks, &dir, Arc::new(directory)).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let as_mallory = connect(&ks, &mallory, tls_addr).await;
        if verified {
            assert!(
                as_mallory.is_err(),
                "a key the proof does not show must not get a PSK"
            );
            // The real Alice, whose key the proof shows, still connects.
            let as_alice = connect(&ks, &alice, tls_addr).await;
            assert!(as_alice.is_ok(), "alice: {:?}", as_alice.err());
        } else {
            assert!(
                as_mallory.is_ok(),
                "the unverified path believes the provider: {:?}",
                as_mallory.err()
            );
        }
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

/// The attack: a phone holding a live PSK from a handshake with sipd keeps getting in after its
/// key was revoked on chain, or replaced (a stolen phone's key rotated away), until the PSK
/// expires. Now each resumption re-reads the key: a revoked or replaced key refuses the TLS
/// handshake (`psk_key_lost`) and drops the PSK, while an unchanged key still resumes without a
/// handshake. The old code let Carol and Bob back in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_psks_die_with_the_on_chain_key_their_handshake_proved() {
    let ks = Keystore::new().await;
    let alice = ks.publish("+15551230001", 2).await;
    let bob = ks.publish("+15551230002", 3).await;
    let carol = ks.publish("+15551230003", 4).await;
    let dir = tempfile::tempdir().unwrap();
    // No key cache: the revocation counts at once, without waiting for a TTL.
    let directory = Arc::new(ks.directory().with_ttl(Duration::ZERO));
    let (tls_addr, server) = start_sipd_with(&ks, &dir, directory).await;
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let a = connect(&ks, &alice, tls_addr).await.expect("alice");
    let b = connect(&ks, &bob, tls_addr).await.expect("bob");
    let c = connect(&ks, &carol, tls_addr).await.expect("carol");
    ks.revoke(carol.name()).await;
    ks.rotate(bob.name(), 3).await;

    let lost = [HandshakeFailure::PskKeyLost];
    for (who, phone, n) in [("revoked carol", &c, 1), ("rotated bob", &b, 2)] {
        let again = resume(phone, tls_addr).await;
        assert!(again.is_err(), "{who} resumed with the PSK of a key gone");
        until_refused(&metrics, &lost, n).await;
    }
    // The PSK was dropped: offered again it is simply unknown.
    let unknown = [HandshakeFailure::PskRefused];
    let before = refused(&metrics, &unknown);
    assert!(resume(&c, tls_addr).await.is_err());
    until_refused(&metrics, &unknown, before + 1).await;
    assert_eq!(refused(&metrics, &lost), 2);

    // Alice's key is unchanged: her PSK opens TLS with no handshake, and SIP works over it.
    let mut again = resume(&a, tls_addr).await.expect("alice resumes");
    again.register_with_digest("pw+15551230001").await;
    assert_eq!(refused(&metrics, &lost), 2);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// A peer sipd domain (`[peers]`) linked in to us over TLS-PSK has its key revoked on chain:
/// its open link is closed within `recheck_secs`, and its stored PSK opens nothing. The old code
/// kept the link serving and let the PSK reconnect until it expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_domains_link_in_is_closed_and_its_psk_refused_once_its_key_is_revoked() {
    const PEER: &str = "peer.example.net";
    let ks = Keystore::new().await;
    let peer = ks.publish(PEER, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let directory = Arc::new(ks.directory().with_ttl(Duration::ZERO));
    let recheck = Duration::from_secs(1);
    let (tls_addr, server) = start_sipd_peering(&ks, &dir, directory, &[(PEER, recheck)]).await;
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let mut link = connect(&ks, &peer, tls_addr)
        .await
        .expect("the peer links in");
    // The link is served: an OPTIONS over it is answered (by sipd itself or refused, either way
    // it is read), which also means the connection is known as the peer's.
    link.send(&format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\n\
Via: SIP/2.0/TLS {local};branch=z9hG4bKopt1\n\
Max-Forwards: 70\n\
From: <sip:ping@{PEER}>;tag=o1\n\
To: <sip:{DOMAIN}>\n\
Call-ID: opt-1\n\
CSeq: 1 OPTIONS\n\
Content-Length: 0\n\n",
        local = link.local
    ))
    .await;
    link.expect(|m| m.status().is_some()).await;
    ks.revoke(peer.name()).await;

    // Its stored PSK opens nothing (refused at the re-check, or already dropped by the watch).
    assert!(
        resume(&link, tls_addr).await.is_err(),
        "the revoked domain's PSK reconnected"
    );
    let either = [HandshakeFailure::PskKeyLost, HandshakeFailure::PskRefused];
    until_refused(&metrics, &either, 1).await;

    // The open link is closed by the next re-check (bounded: a few recheck periods).
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(recheck * 5, async {
        loop {
            match link.tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the revoked domain's link stayed open");
    assert_eq!(metrics.peer_links_in_key_lost.get(), 1);
    assert!(resume(&link, tls_addr).await.is_err());
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// A keystore node that stops answering (hangs, rather than refusing connections): a phone
/// holding a proved PSK still gets in once the re-read has waited `handshake_timeout_secs`' worth
/// (here 300 ms) — an outage is not a revocation — and a new phone's handshake is refused as
/// `keystore_unavailable` instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_hangs_keeps_a_proved_psk_and_holds_no_connection_for_ever() {
    let ks = Keystore::new().await;
    let alice = ks.publish("+15551230001", 2).await;
    let bob = ks.publish("+15551230002", 3).await;
    let hanging = Arc::new(LyingProvider {
        chain: ks.chain.clone(),
        // Lies about nobody here.
        id: ClientId::of(&IdentityName::parse("+15559999999").unwrap()),
        key: Vec::new(),
        hang: Default::default(),
    });
    let directory = ChainKeyDirectory::new(hanging.clone(), ks.contract)
        .with_ttl(Duration::ZERO)
        .with_read_timeout(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let (tls_addr, server) = start_sipd_with(&ks, &dir, Arc::new(directory)).await;
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let a = connect(&ks, &alice, tls_addr).await.expect("alice");
    hanging
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut again = resume(&a, tls_addr)
        .await
        .expect("a proved PSK outlives a chain that does not answer");
    again.register_with_digest("pw+15551230001").await;
    assert!(connect(&ks, &bob, tls_addr).await.is_err());
    until_refused(&metrics, &[HandshakeFailure::KeystoreUnavailable], 1).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

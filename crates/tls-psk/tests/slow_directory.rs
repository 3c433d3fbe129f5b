//! A responder whose key directory is slow for one identity (a chain read stuck behind RPC latency)
//! must keep answering every other initiator: the replay cache is locked only around its own
//! check-and-insert, never across the directory look-up.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chaincall_handshake::{HandshakeConfig, Initiator, LocalIdentity, Protocol};
use chaincall_identity::{
    DirectoryEntry, DirectoryError, IdentityKey, IdentityName, KeyDirectory, StaticDirectory,
};
use chaincall_tls_psk::{HandshakeService, transport};

/// How long the slow look-up waits to be released before giving up. A liveness bound (the test
/// never waits this long when the responder is correct), not a timing assertion.
const GIVE_UP_AFTER: Duration = Duration::from_secs(20);

#[derive(Default)]
struct GateState {
    entered: bool,
    released: bool,
    gave_up: bool,
}

/// Holds the look-up of one identity until released (or until [`GIVE_UP_AFTER`]).
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the directory: announce we are in, wait for the release.
    fn hold(&self) -> bool {
        let mut s = self.lock();
        s.entered = true;
        self.changed.notify_all();
        let (mut s, timeout) = self
            .changed
            .wait_timeout_while(s, GIVE_UP_AFTER, |s| !s.released)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() && !s.released {
            s.gave_up = true;
            return false;
        }
        true
    }

    fn wait_entered(&self) -> bool {
        let s = self.lock();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, GIVE_UP_AFTER, |s| !s.entered)
            .unwrap_or_else(|e| e.into_inner());
        s.entered
    }

    fn release(&self) {
        self.lock().released = true;
        self.changed.notify_all();
    }
}

/// A directory that answers from `inner`, but holds `slow`'s look-up at the gate, blocking its
/// thread as the chain-backed directory does (`block_in_place` around the RPC read).
struct GatedDirectory {
    inner: StaticDirectory,
    slow: IdentityName,
    gate: Arc<Gate>,
}

impl KeyDirectory for GatedDirectory {
    fn lookup(&self, name: &IdentityName) -> Result<DirectoryEntry, DirectoryError> {
        if name == &self.slow {
            let released = tokio::task::block_in_place(|| self.gate.hold());
            if !released {
                return Err(DirectoryError::Unavailable("gate never opened".into()));
            }
        }
        self.inner.lookup(name)
    }
}

fn identity(name: &str) -> LocalIdentity {
    LocalIdentity::new(
        IdentityName::parse(name).unwrap(),
        Arc::new(IdentityKey::generate()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_directory_lookup_does_not_hold_up_other_handshakes() {
    for protocol in [Protocol::Sts, Protocol::Nsl] {
        let server = identity("sip.example.org");
        let (slow_phone, quick_phone) = (identity("+15551230001"), identity("+15551230002"));
        let mut dir = StaticDirectory::new();
        for id in [&server, &slow_phone, &quick_phone] {
            dir.approve(id.name().clone(), id.key().public());
        }
        let gate = Arc::new(Gate::default());
        let service = HandshakeService::new(
            HandshakeConfig::default(),
            server.clone(),
            Arc::new(GatedDirectory {
                inner: dir.clone(),
                slow: slow_phone.name().clone(),
                gate: gate.clone(),
            }),
        );
        let start = |phone: &LocalIdentity| {
            let initiator = Initiator::new(
                HandshakeConfig::default(),
                phone.clone(),
                server.name().clone(),
                protocol,
                &dir,
                Instant::now(),
            )
            .unwrap();
            let (mut client_end, mut server_end) = tokio::io::duplex(64 * 1024);
            let svc = service.clone();
            let responder = tokio::spawn(async move { svc.respond(&mut server_end).await });
            let initiator = tokio::spawn(async move {
                transport::initiate(&mut client_end, initiator, 2 * GIVE_UP_AFTER).await
            });
            (initiator, responder)
        };

        // The slow phone's message 1 reaches the directory and sticks there.
        let (slow_init, slow_resp) = start(&slow_phone);
        let g = gate.clone();
        let entered = tokio::task::spawn_blocking(move || g.wait_entered())
            .await
            .unwrap();
        assert!(entered, "{protocol}: the slow look-up never started");

        // Meanwhile another phone runs a whole handshake.
        let (quick_init, quick_resp) = start(&quick_phone);
        let quick_client = quick_init.await.unwrap();
        let quick_server = quick_resp.await.unwrap();
        let still_held = !gate.lock().gave_up;
        gate.release();
        assert!(
            still_held,
            "{protocol}: the other handshake finished only after the slow look-up gave up"
        );
        let (qc, qs) = (quick_client.unwrap(), quick_server.unwrap());
        assert_eq!(qc.identity, qs.identity);
        assert_eq!(&qs.peer, quick_phone.name());

        // Released, the slow handshake completes too.
        let slow_client = slow_init.await.unwrap().unwrap();
        let slow_server = slow_resp.await.unwrap().unwrap();
        assert_eq!(slow_client.identity, slow_server.identity);
        assert_eq!(&slow_server.peer, slow_phone.name());
    }
}

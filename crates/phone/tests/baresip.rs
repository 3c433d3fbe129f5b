//! A standard phone as the peer: chaincall's phone (signalling over TLS-PSK to sipd) calls a real
//! baresip 1.0 (Debian `baresip-core`, registered to the same sipd over UDP) with SDES-SRTP
//! (RFC 4568). Each side must decrypt the other's SRTP, and the phone must report the call as
//! encrypted but *not* verified on chain. Skips without baresip unless CHAINCALL_REQUIRE_PEERS=1.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chaincall_chain::verified::HeaderTrust;
use chaincall_chain::{
    ClientId, EmbeddedChain, KeystoreChain, dev_signer, receipt_commitment, receipt_hash,
};
use chaincall_identity::{IdentityKey, IdentityName, PhoneNumber};
use chaincall_media::g711::Codec;
use chaincall_phone::{
    KeyLookup, KeyMode, Phone, PhoneConfig, PhoneEvent, PhoneEvents, Signalling,
};

const SERVER: &str = "sip.chaincall.test";
const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";

/// Puts `key` on chain under `name`, approved by the owner.
async fn publish(
    chain: &EmbeddedChain,
    contract: alloy::primitives::Address,
    name: &str,
    key: &IdentityKey,
    wallet: usize,
) {
    let id = ClientId::of(&IdentityName::parse(name).unwrap());
    let from = dev_signer(wallet);
    let receipt = receipt_hash(format!("receipt {name}").as_bytes());
    let public = key.public();
    chain
        .add_client(
            contract,
            &from,
            id,
            public.tag(),
            &public.to_bytes(),
            receipt_commitment(&id, from.address(), &receipt),
        )
        .await
        .unwrap();
    chain
        .approve_client(contract, &dev_signer(0), id, receipt)
        .await
        .unwrap();
}

fn tone(path: &Path) {
    let samples: Vec<i16> = (0..16_000)
        .map(|i| (8000.0 * (i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 8000.0).sin()) as i16)
        .collect();
    chaincall_media::wav::write_file(path, &samples).unwrap();
}

fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

async fn wait_for(events: &mut PhoneEvents, want: impl Fn(&PhoneEvent) -> bool) -> PhoneEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("event in time")
            .expect("phone running");
        if let PhoneEvent::Refused { reason, .. } = &e {
            panic!("refused: {reason}");
        }
        if want(&e) {
            return e;
        }
    }
}

struct Baresip(Child);

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaincall_phone_calls_baresip_with_sdes_srtp() {
    let Some(baresip) = chaincall_testkit::peer("baresip") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();

    // Keystore: sipd's identity and alice's key (bob is a standard phone: not on chain).
    let chain = Arc::new(EmbeddedChain::default());
    let contract = chain
        .deploy(&dev_signer(0))
        .await
        .unwrap()
        .contract_address
        .unwrap();
    let sipd_key = IdentityKey::generate();
    let alice_key = IdentityKey::generate();
    publish(&chain, contract, SERVER, &sipd_key, 1).await;
    publish(&chain, contract, ALICE, &alice_key, 2).await;

    // sipd: UDP for baresip, TLS-PSK for the chaincall phone; a trusted network (no digest).
    let key_file = tmp.path().join("sipd.key");
    std::fs::write(
        &key_file,
        hex::encode(&sipd_key.dangerous_secret_bytes()[..]),
    )
    .unwrap();
    let udp_port = chaincall_testkit::free_udp_port();
    let toml = format!(
        "listen = [\"udp:127.0.0.1:{udp_port}\", \"tls:127.0.0.1:0\"]\n\
         [auth]\nmode = \"none\"\n\
         [tls_psk]\nidentity = \"{SERVER}\"\nkey_file = \"{}\"\nrpc_url = \"in-process\"\ncontract = \"{contract}\"\n",
        key_file.display()
    );
    std::fs::write(tmp.path().join("sipd.toml"), toml).unwrap();
    let cfg = chaincall_sipd::Config::load(&tmp.path().join("sipd.toml")).unwrap();
    let psk =
        chaincall_sipd::tls::psk_server_on_chain(cfg.tls_psk.as_ref().unwrap(), chain.clone())
            .await
            .unwrap();
    let server = chaincall_sipd::Server::bind_with_tls_psk(cfg, psk)
        .await
        .unwrap();
    let tls = server
        .local()
        .iter()
        .find_map(|l| match l {
            chaincall_sipd::Listen::Tls(a) => Some(*a),
            _ => None,
        })
        .unwrap();
    let metrics = server.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let domain = format!("127.0.0.1:{udp_port}");

    // bob: baresip, SDES mandatory, auto-answer, sends a 440 Hz tone, records what it hears.
    let bob_dir = tmp.path().join("bob");
    std::fs::create_dir_all(&bob_dir).unwrap();
    let wav = bob_dir.join("tone.wav");
    let heard = bob_dir.join("heard.wav");
    tone(&wav);
    let bob_port = chaincall_testkit::free_udp_port();
    std::fs::write(
        bob_dir.join("config"),
        format!(
            "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{bob_port}\n\
             audio_player\t\taufile,{heard}\naudio_source\t\taufile,{wav}\naudio_alert\t\taufile,{heard}\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule\t\t\taufile.so\n\
             module\t\t\tsrtp.so\nmodule_app\t\taccount.so\nmodule_app\t\tmenu.so\n",
            heard = heard.display(),
            wav = wav.display()
        ),
    )
    .unwrap();
    std::fs::write(
        bob_dir.join("accounts"),
        format!(
            "<sip:{BOB}@{domain}>;regint=60;mediaenc=srtp-mand;answermode=auto;audio_codecs=PCMU\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(bob_dir.join("log.txt")).unwrap();
    let bob = Baresip(
        Command::new(&baresip)
            .args(["-n", "127.0.0.1", "-s", "-f"])
            .arg(&bob_dir)
            .args(["-t", "20"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("baresip starts"),
    );
    for _ in 0..50 {
        if metrics.registrations.get() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bob_log = || std::fs::read_to_string(bob_dir.join("log.txt")).unwrap_or_default();
    assert!(
        metrics.registrations.get() >= 1,
        "baresip did not register:\n{}",
        bob_log()
    );

    // alice: the chaincall phone over TLS-PSK, SDES for a standard callee.
    let genesis = chain.block_header(0).await.unwrap().hash_slow();
    let cfg = PhoneConfig {
        number: PhoneNumber::parse(ALICE).unwrap(),
        identity: Arc::new(alice_key),
        sip_password: zeroize::Zeroizing::new(String::new()),
        sip_domain: domain.clone(),
        signalling: Signalling::TlsPsk {
            addr: tls,
            server: IdentityName::parse(SERVER).unwrap(),
        },
        media_ip: "127.0.0.1".parse().unwrap(),
        codecs: vec![Codec::Pcmu],
        key_mode: KeyMode::Sdes,
        keylog: None,
        auto_answer: false,
        audio: Arc::new(chaincall_media::signal::speech_like(1500, 7)),
        register_expires: 600,
    };
    let lookup = KeyLookup::new(
        chain.clone(),
        contract,
        Some(Arc::new(HeaderTrust::checkpoint(0, genesis))),
    );
    let (alice, mut events, _) = Phone::connect(cfg, lookup).await.unwrap();
    alice.register(600).await.unwrap();
    let call = alice.call(&PhoneNumber::parse(BOB).unwrap()).await.unwrap();
    let up = wait_for(&mut events, |e| matches!(e, PhoneEvent::CallUp { .. })).await;
    let PhoneEvent::CallUp {
        mode,
        verified_peer,
        ..
    } = up
    else {
        unreachable!()
    };
    assert_eq!(mode, KeyMode::Sdes);
    assert!(
        verified_peer.is_none(),
        "SDES keys are not bound to an on-chain identity"
    );
    tokio::time::sleep(Duration::from_millis(1800)).await;
    alice.hangup(&call).await.unwrap();
    let PhoneEvent::CallEnded(report) =
        wait_for(&mut events, |e| matches!(e, PhoneEvent::CallEnded(_))).await
    else {
        unreachable!()
    };
    let log = bob_log();
    assert!(
        log.contains("Call established"),
        "baresip did not answer:\n{log}"
    );
    assert!(log.contains("a=crypto:"), "no SDES at baresip:\n{log}");

    // We decrypted baresip's SRTP: packets authenticated and the tone came through.
    assert!(report.stats.rtp_received >= 40, "{:?}\n{log}", report.stats);
    assert_eq!(report.stats.rtp_rejected, 0, "{:?}", report.stats);
    let got = rms(&report.recorded);
    assert!(got > 3000.0, "the tone should be loud, rms {got}");
    assert!(report.stats.rtp_sent >= 70);

    // baresip took our SRTP: it saw the media flow and reported no SRTP failure. (baresip 1.0's
    // aufile module cannot record, so its log is the evidence.)
    drop(bob);
    assert!(
        log.contains("incoming rtp for 'audio' established"),
        "{log}"
    );
    assert!(log.contains("SRTP is Enabled"), "{log}");
    let lower = log.to_ascii_lowercase();
    assert!(
        !lower.contains("unprotect") && !lower.contains("authentication fail"),
        "baresip failed to decrypt our SRTP:\n{log}"
    );
    // We offered rtcp-mux; baresip declined, so our RTCP went to its RTCP port, not its RTP port.
    assert!(
        !log.contains("drop incoming RTCP packet on RTP port"),
        "{log}"
    );

    alice.shutdown().await;
    let _ = stop.send(());
}

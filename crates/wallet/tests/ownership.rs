//! Number ownership and proof of possession (issue 13): the server, not the payload, decides who
//! gets a number — from the operator's ranges, or by a one-time code sent by SMS through a real
//! SMPP 3.4 SMS centre (Debian libnet-smpp-perl in server mode, `tests/smsc/smsc.pl`) — and
//! approval needs a signature by the identity key. Every refusal leaves the receipt unconsumed.

mod common;

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chaincall_chain::{EmbeddedChain, KeystoreChain};
use chaincall_identity::{IdentityKey, KeyStatus, PhoneNumber};
use chaincall_wallet::client::{NumberRequest, request_number_code};
use chaincall_wallet::error::ApiError;
use chaincall_wallet::number::{CodeRequest, NumberClaim, binding};
use chaincall_wallet::receipt::{Purchase, Receipt};
use chaincall_wallet::testing::deploy_test_keystore;
use common::*;

const LIMITS: &str = "[limits]\nrequests_per_second = 1000.0\nburst = 1000.0\n";
const SMPP_SYSTEM_ID: &str = "chaincall";
const SMPP_PASSWORD: &str = "s3cret";

async fn server_in(dir: &Path, extra: &str) -> Server<EmbeddedChain> {
    let chain = Arc::new(EmbeddedChain::default());
    let contract = deploy_test_keystore(&*chain).await.unwrap();
    let config = write_config(dir, &format!("{LIMITS}{extra}"), "embedded", None);
    Server::start(chain, contract, config).await
}

fn purchase_of(r: &Receipt) -> Purchase {
    serde_json::from_str(&r.original_json).unwrap()
}

/// The full phone flow for `phone`, asking for `number`.
async fn onboard(
    s: &Server<EmbeddedChain>,
    phone: &Phone,
    number: &NumberRequest,
    r: &Receipt,
) -> Result<chaincall_wallet::OnboardingStatus, chaincall_wallet::client::ClientError> {
    chaincall_wallet::onboard_phone(
        &s.client,
        &*s.chain,
        s.contract,
        &s.server_key,
        &phone.wallet,
        &phone.identity,
        number,
        r.clone(),
        Duration::from_secs(60),
    )
    .await
}

/// `onboard` asking for `number` with `code`; a refusal as its error code.
async fn with_code(
    s: &Server<EmbeddedChain>,
    phone: &Phone,
    number: &str,
    code_text: &str,
    r: &Receipt,
) -> Result<chaincall_wallet::OnboardingStatus, String> {
    onboard(
        s,
        phone,
        &NumberRequest::named(number).with_code(code_text),
        r,
    )
    .await
    .map_err(|e| code(&e))
}

/// The receipt was not consumed: the server holds no onboarding for it.
async fn unconsumed(s: &Server<EmbeddedChain>, r: &Receipt) {
    let id = purchase_of(r).order_id;
    let e = s.client.status(&id).await.unwrap_err();
    assert_eq!(code(&e), "not_found", "receipt {id} was bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_numbers_are_decided_by_the_server_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_in(
        dir.path(),
        "[numbers]\nverifier = \"assigned\"\nranges = [{ first = \"+15550100000\", last = \"+15550100002\" }]\n",
    )
    .await;

    // The next free number, end to end: the server picks the range's first, and the phone's
    // key is approved on chain under it.
    let first = Phone::new();
    let (_, r1) = receipt();
    let done = onboard(&s, &first, &NumberRequest::next_free(), &r1)
        .await
        .unwrap();
    assert_eq!(done.state, "provisioned");
    assert_eq!(done.phone.as_deref(), Some("+15550100000"));
    let id = chaincall_chain::ClientId::of(&chaincall_identity::IdentityName::Phone(
        PhoneNumber::parse("+15550100000").unwrap(),
    ));
    let entry = s.chain.get_client(s.contract, id).await.unwrap();
    assert_eq!(entry.approved_key(), Some(first.identity.public()));

    // A retry of the same receipt (lost answer) gets the same number, whatever it asks for.
    let again = s
        .client
        .onboard(&s.server_key, &{
            let mut p = first.payload(&r1);
            p.phone = String::new();
            p
        })
        .await
        .unwrap();
    assert_eq!(again.phone.as_deref(), Some("+15550100000"));

    // Asking by name: a free number of the range is granted, a taken one or one outside the
    // ranges is refused — and the refused receipt stays unconsumed, usable for a free number.
    let second = Phone::new();
    let (_, r2) = receipt();
    let mut taken = second.payload(&r2);
    taken.phone = "+15550100000".into();
    let e = s.client.onboard(&s.server_key, &taken).await.unwrap_err();
    assert_eq!(
        code(&e),
        "number_taken",
        "approved on chain for the first phone"
    );
    let mut outside = second.payload(&r2);
    outside.phone = "+15557654321".into();
    let e = s.client.onboard(&s.server_key, &outside).await.unwrap_err();
    assert_eq!(code(&e), "number_not_in_range");
    unconsumed(&s, &r2).await;
    let st = s
        .client
        .onboard(&s.server_key, &{
            let mut p = second.payload(&r2);
            p.phone = "+15550100002".into();
            p
        })
        .await
        .unwrap();
    assert_eq!(st.phone.as_deref(), Some("+15550100002"));

    // A crash after the assignment and before the receipt was recorded: the retry gets the
    // number assigned then (claimed here at the verifier, as the killed server did: the gap
    // left below the number asked for by name).
    let fifth = Phone::new();
    let (p5, r5) = receipt();
    let claim = NumberClaim {
        receipt_id: &p5.order_id,
        requested: "",
        binding: [0; 32],
        code: None,
        client_ip: IpAddr::from([127, 0, 0, 1]),
        now_ms: chaincall_wallet::db::now_ms(),
    };
    let before_crash = s.service.numbers().claim(claim).await.unwrap();
    assert_eq!(before_crash.as_str(), "+15550100001");
    let mut retry = fifth.payload(&r5);
    retry.phone = String::new();
    let st = s.client.onboard(&s.server_key, &retry).await.unwrap();
    assert_eq!(st.phone.as_deref(), Some("+15550100001"));
    // Assigned (funded, not on chain yet): nobody else gets it.
    let sixth = Phone::new();
    let (_, r6) = receipt();
    let mut assigned = sixth.payload(&r6);
    assigned.phone = "+15550100001".into();
    let e = s
        .client
        .onboard(&s.server_key, &assigned)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "number_unavailable");
    unconsumed(&s, &r6).await;

    // The range is exhausted now.
    let fourth = Phone::new();
    let (_, r4) = receipt();
    let mut any = fourth.payload(&r4);
    any.phone = String::new();
    let e = s.client.onboard(&s.server_key, &any).await.unwrap_err();
    assert_eq!(code(&e), "numbers_exhausted");
    unconsumed(&s, &r4).await;
    s.stop().await;
}

/// Issue 13's attack: with one genuine receipt, onboard a number that is not yours. Before the
/// fix the payload's number was taken as given and this onboarding was funded (and then approved
/// after `addClient`); now the server refuses and the receipt stays unconsumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_a_number_that_is_not_yours_fails_and_keeps_the_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_in(
        dir.path(),
        "[numbers]\nverifier = \"assigned\"\nranges = [{ first = \"+15550100000\", last = \"+15550100099\" }]\n",
    )
    .await;
    let mallory = Phone {
        number: "+15557654321".into(), // someone's real number, not the operator's to give
        ..Phone::new()
    };
    let (_, r) = receipt();
    let e = onboard(&s, &mallory, &NumberRequest::named(&mallory.number), &r)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "number_not_in_range");
    unconsumed(&s, &r).await;
    assert_eq!(
        s.chain
            .get_client(s.contract, mallory.id())
            .await
            .unwrap()
            .status,
        KeyStatus::Unknown
    );
    // The same receipt still buys Mallory a number of her own.
    let done = onboard(&s, &mallory, &NumberRequest::next_free(), &r)
        .await
        .unwrap();
    assert_eq!(done.state, "provisioned");
    assert_eq!(done.phone.as_deref(), Some("+15550100000"));
    s.stop().await;
}

/// Proof of possession at approval: the declared key must sign (id, wallet, receipt commitment).
/// Before the fix the `proof` field was ignored, so the first two requests below were approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_requires_a_proof_of_possession_by_the_pending_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_in(dir.path(), "").await;
    let phone = Phone::new();
    let (purchase, r) = receipt();
    let st = s.post_onboard(&phone, &r).await.unwrap();
    assert!(st.is_funded(), "{st:?}");
    s.add_pending(&phone, &purchase, &phone.identity.public())
        .await;

    // No proof.
    let mut none = phone.payload(&r);
    none.proof = None;
    let e = s.client.approve(&s.server_key, &none).await.unwrap_err();
    assert_eq!(code(&e), "bad_proof_of_possession");
    // Signed by another key (someone publishing a key they do not hold).
    let other = IdentityKey::generate();
    let by_other =
        phone
            .payload(&r)
            .with_proof(&other, &phone.id(), &purchase.chain_receipt_hash());
    let e = s
        .client
        .approve(&s.server_key, &by_other)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "bad_proof_of_possession");
    // The right key over another number's id (a proof replayed from elsewhere).
    let elsewhere = Phone::new();
    let replayed = phone.payload(&r).with_proof(
        &phone.identity,
        &elsewhere.id(),
        &purchase.chain_receipt_hash(),
    );
    let e = s
        .client
        .approve(&s.server_key, &replayed)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "bad_proof_of_possession");
    // Nothing approved, nothing burned: the row still waits, and the genuine request succeeds.
    assert_eq!(approvals(&*s.chain, s.contract, phone.id()).await, 0);
    assert_eq!(
        s.client.status(&purchase.order_id).await.unwrap().state,
        "funded"
    );
    let ok = s.post_approve(&phone, &r).await.unwrap();
    assert_eq!(ok.state, "provisioned");

    // A pending entry holding another key than the one that signed is refused with
    // `pending_key_mismatch`, receipt kept: embedded.rs,
    // approval_checks_the_pending_entry_against_the_record (its payloads carry K1's proof).
    s.stop().await;
}

/// The Perl SMS centre, killed on drop.
struct Smsc {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Smsc {
    fn start(out: &Path, port: Option<u16>) -> Option<Self> {
        let perl = chaincall_testkit::peer("perl")?;
        let has_smpp = Command::new(&perl)
            .args(["-MNet::SMPP", "-e", "1"])
            .status()
            .is_ok_and(|s| s.success());
        if !has_smpp {
            return chaincall_testkit::missing("perl Net::SMPP (Debian libnet-smpp-perl)");
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smsc/smsc.pl");
        let mut cmd = Command::new(perl);
        cmd.arg(script)
            .arg(out)
            .arg(SMPP_SYSTEM_ID)
            .arg(SMPP_PASSWORD);
        if let Some(p) = port {
            cmd.arg(p.to_string());
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("smsc.pl said {line:?}"));
        Some(Self {
            child,
            port,
            out: out.to_path_buf(),
        })
    }

    /// The code in the latest SMS the SMS centre received for `phone`.
    async fn code_for(&self, phone: &str, nth: usize) -> String {
        let dest = phone.trim_start_matches('+');
        for _ in 0..200 {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let msgs: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix(dest)?.strip_prefix('\t'))
                .collect();
            if msgs.len() >= nth {
                let msg = msgs[nth - 1];
                let code = msg.split_whitespace().next().unwrap().to_owned();
                assert!(
                    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
                    "{msg}"
                );
                return code;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no SMS number {nth} to {phone} in {}", self.out.display());
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sms_config(port: u16, extra: &str) -> String {
    format!(
        "[numbers]\nverifier = \"sms_code\"\nsmsc = \"127.0.0.1:{port}\"\nsystem_id = \"{SMPP_SYSTEM_ID}\"\n\
         password_file = \"smpp.password\"\ntimeout_ms = 2000\n{extra}"
    )
}

async fn sms_server(dir: &Path, port: u16, extra: &str) -> Server<EmbeddedChain> {
    chaincall_wallet::server::write_secret(&dir.join("smpp.password"), SMPP_PASSWORD).unwrap();
    server_in(dir, &sms_config(port, extra)).await
}

async fn ask_code(
    s: &Server<EmbeddedChain>,
    phone: &Phone,
    number: &str,
    r: &Receipt,
) -> Result<(), String> {
    request_number_code(
        &s.client,
        &s.server_key,
        &phone.wallet,
        &phone.identity.public(),
        number,
        r.clone(),
    )
    .await
    .map_err(|e| code(&e))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_code_proves_the_number_and_refuses_every_misuse() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smsc) = Smsc::start(&dir.path().join("sms.txt"), None) else {
        return;
    };
    let s = sms_server(
        dir.path(),
        smsc.port,
        "codes_per_number_per_hour = 3\ncodes_per_address_per_hour = 100\n",
    )
    .await;
    assert_eq!(s.service.numbers().kind(), "sms_code");

    // The attack: Mallory, with a genuine receipt, onboards Alice's number. No code, a guessed
    // code: refused, and her receipt is not consumed.
    let alice = Phone::new();
    let mallory = Phone {
        number: alice.number.clone(),
        ..Phone::new()
    };
    let (_, rm) = receipt();
    let e = onboard(&s, &mallory, &NumberRequest::named(&alice.number), &rm)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "code_required");
    assert_eq!(
        with_code(&s, &mallory, &alice.number, "123456", &rm)
            .await
            .unwrap_err(),
        "code_invalid"
    );
    unconsumed(&s, &rm).await;

    // Alice asks for a code; a wrong one is refused.
    let (_, ra) = receipt();
    ask_code(&s, &alice, &alice.number, &ra).await.unwrap();
    let code_a = smsc.code_for(&alice.number, 1).await;
    let wrong = if code_a == "000000" {
        "000001"
    } else {
        "000000"
    };
    assert_eq!(
        with_code(&s, &alice, &alice.number, wrong, &ra)
            .await
            .unwrap_err(),
        "code_invalid"
    );

    // Alice's code for another number (Bob's, who asked for his own code).
    let bob = Phone::new();
    let (_, rb) = receipt();
    ask_code(&s, &bob, &bob.number, &rb).await.unwrap();
    assert_eq!(
        with_code(&s, &bob, &bob.number, &code_a, &rb)
            .await
            .unwrap_err(),
        "code_invalid"
    );

    // Alice's code used by Mallory for Alice's number: bound to Alice's key, wallet and receipt.
    assert_eq!(
        with_code(&s, &mallory, &alice.number, &code_a, &rm)
            .await
            .unwrap_err(),
        "code_invalid"
    );
    unconsumed(&s, &rm).await;

    // Expired: the code's lifetime passed (its expiry set to the past, as 5 minutes would).
    sqlx::query("UPDATE number_code SET expires_at = 0 WHERE phone = $1")
        .bind(&alice.number)
        .execute(s.service.db().pool())
        .await
        .unwrap();
    assert_eq!(
        with_code(&s, &alice, &alice.number, &code_a, &ra)
            .await
            .unwrap_err(),
        "code_expired"
    );
    unconsumed(&s, &ra).await;

    // A fresh code onboards Alice end to end: her key approved on chain under her number.
    ask_code(&s, &alice, &alice.number, &ra).await.unwrap();
    let code_a2 = smsc.code_for(&alice.number, 2).await;
    let done = with_code(&s, &alice, &alice.number, &code_a2, &ra)
        .await
        .unwrap();
    assert_eq!(done.state, "provisioned");
    assert_eq!(done.phone.as_deref(), Some(alice.number.as_str()));
    let entry = s.chain.get_client(s.contract, alice.id()).await.unwrap();
    assert_eq!(entry.approved_key(), Some(alice.identity.public()));
    assert_eq!(entry.wallet, Some(alice.wallet.address()));
    // Alice's number recycled to Dave before the operator revoked her key: no code is sent and
    // nothing is consumed; he is told the number is taken.
    let dave = Phone {
        number: alice.number.clone(),
        ..Phone::new()
    };
    let (_, rd) = receipt();
    assert_eq!(
        ask_code(&s, &dave, &dave.number, &rd).await.unwrap_err(),
        "number_taken"
    );
    unconsumed(&s, &rd).await;

    // Too many attempts: after the 5 wrong tries Bob's right code no longer works.
    let code_b = smsc.code_for(&bob.number, 1).await;
    // (One wrong try was Alice's code above.)
    for guess in ["111111", "222222", "333333", "444444"] {
        let guess = if guess == code_b { "555555" } else { guess };
        assert_eq!(
            with_code(&s, &bob, &bob.number, guess, &rb)
                .await
                .unwrap_err(),
            "code_invalid"
        );
    }
    assert_eq!(
        with_code(&s, &bob, &bob.number, &code_b, &rb)
            .await
            .unwrap_err(),
        "code_attempts_exceeded"
    );
    unconsumed(&s, &rb).await;

    // Single use: a code that proved a number once proves nothing again (checked at the
    // verifier, since a retried onboarding of the same receipt never asks twice).
    let carol = Phone::new();
    let (pc, rc) = receipt();
    ask_code(&s, &carol, &carol.number, &rc).await.unwrap();
    let code_c = smsc.code_for(&carol.number, 1).await;
    let bind = binding(
        carol.identity.public().tag(),
        &carol.identity.public().to_bytes(),
        carol.wallet.address().as_ref(),
        &pc.token_sha256_hex(),
    );
    let claim = NumberClaim {
        receipt_id: &pc.order_id,
        requested: &carol.number,
        binding: bind,
        code: Some(&code_c),
        client_ip: IpAddr::from([127, 0, 0, 1]),
        now_ms: chaincall_wallet::db::now_ms(),
    };
    assert_eq!(
        s.service.numbers().claim(claim).await.unwrap().as_str(),
        carol.number
    );
    assert_eq!(
        s.service.numbers().claim(claim).await.unwrap_err(),
        ApiError::CodeInvalid
    );

    // Per-number rate limit: three codes an hour to one number (Bob has had one).
    ask_code(&s, &bob, &bob.number, &rb).await.unwrap();
    ask_code(&s, &bob, &bob.number, &rb).await.unwrap();
    assert_eq!(
        ask_code(&s, &bob, &bob.number, &rb).await.unwrap_err(),
        "code_rate_limited"
    );
    // A bound receipt buys no more codes.
    assert_eq!(
        ask_code(&s, &alice, &alice.number, &ra).await.unwrap_err(),
        "receipt_reused"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_centre_down_consumes_nothing_and_codes_are_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let Some(smsc) = Smsc::start(&dir.path().join("sms.txt"), None) else {
        return;
    };
    let port = smsc.port;
    let s = sms_server(
        dir.path(),
        port,
        "codes_per_number_per_hour = 1\ncodes_per_address_per_hour = 3\n",
    )
    .await;
    drop(smsc);

    // The SMS centre is down: a clear error, and nothing counted (the number's single code per
    // hour is still there) or bound.
    let alice = Phone::new();
    let (_, ra) = receipt();
    for _ in 0..2 {
        assert_eq!(
            ask_code(&s, &alice, &alice.number, &ra).await.unwrap_err(),
            "sms_unavailable"
        );
    }
    unconsumed(&s, &ra).await;
    let smsc = Smsc::start(&dir.path().join("sms.txt"), Some(port)).unwrap();
    ask_code(&s, &alice, &alice.number, &ra).await.unwrap();
    let code_a = smsc.code_for(&alice.number, 1).await;
    let done = with_code(&s, &alice, &alice.number, &code_a, &ra)
        .await
        .unwrap();
    assert_eq!(done.state, "provisioned");

    // Per client address, as the server observed it: 10.0.0.1 has three codes an hour, then
    // is refused while 10.0.0.2 is not.
    let now = chaincall_wallet::db::now_ms();
    fn from(last: u8, phone: &PhoneNumber, now_ms: i64) -> CodeRequest<'_> {
        CodeRequest {
            phone,
            binding: [last; 32],
            client_ip: IpAddr::from([10, 0, 0, last]),
            now_ms,
        }
    }
    let numbers: Vec<PhoneNumber> = (0..4)
        .map(|_| PhoneNumber::parse(&phone_number()).unwrap())
        .collect();
    for n in &numbers[..3] {
        s.service
            .numbers()
            .send_code(from(1, n, now))
            .await
            .unwrap();
    }
    assert_eq!(
        s.service
            .numbers()
            .send_code(from(1, &numbers[3], now))
            .await
            .unwrap_err(),
        ApiError::CodeRateLimited
    );
    s.service
        .numbers()
        .send_code(from(2, &numbers[3], now))
        .await
        .unwrap();
    s.stop().await;
}

/// The SMPP 3.4 client against the real SMS centre: bind_transmitter, submit_sm (the SMSC
/// records destination and text), enquire_link, unbind; a wrong password is refused with
/// ESME_RINVPASWD (0x0000000E, SMPP 3.4 §5.1.3) and an SMSC that is not there is an I/O error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpp_session_against_a_real_sms_centre() {
    use chaincall_wallet::error::SmppError;
    use chaincall_wallet::number::smpp_client::{SmppConfig, SmppSession};
    let dir = tempfile::tempdir().unwrap();
    let Some(smsc) = Smsc::start(&dir.path().join("sms.txt"), None) else {
        return;
    };
    let config = SmppConfig {
        address: format!("127.0.0.1:{}", smsc.port),
        system_id: SMPP_SYSTEM_ID.into(),
        password: chaincall_identity::Secret::new(SMPP_PASSWORD.into()),
        system_type: String::new(),
        source_addr: "chaincall".into(),
        timeout: Duration::from_secs(5),
    };
    let mut session = SmppSession::bind(&config).await.unwrap();
    let to = PhoneNumber::parse("+15550123456").unwrap();
    let id = session.submit("chaincall", &to, b"hello 1").await.unwrap();
    assert!(id.starts_with("msg"), "{id}");
    session.enquire_link().await.unwrap();
    let id2 = session.submit("chaincall", &to, b"hello 2").await.unwrap();
    assert_ne!(id, id2);
    session.unbind().await.unwrap();
    let text = std::fs::read_to_string(&smsc.out).unwrap();
    assert_eq!(text, "15550123456\thello 1\n15550123456\thello 2\n");

    let wrong = SmppConfig {
        password: chaincall_identity::Secret::new("nope".into()),
        ..config.clone()
    };
    assert_eq!(
        SmppSession::bind(&wrong).await.unwrap_err(),
        SmppError::Refused { status: 0x0E }
    );
    let port = smsc.port;
    drop(smsc);
    let gone = SmppConfig {
        address: format!("127.0.0.1:{port}"),
        ..config
    };
    assert!(matches!(
        SmppSession::bind(&gone).await.unwrap_err(),
        SmppError::Io(_)
    ));
}

/// Concurrent assignments of the next free number never hand one number out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_assignments_get_distinct_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_in(
        dir.path(),
        "[numbers]\nverifier = \"assigned\"\nranges = [{ first = \"+15550100000\", last = \"+15550100099\" }]\n",
    )
    .await;
    let service = s.service.clone();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let service = service.clone();
            tokio::spawn(async move {
                let receipt_id = format!("concurrent-{i}");
                let claim = NumberClaim {
                    receipt_id: &receipt_id,
                    requested: "",
                    binding: [0; 32],
                    code: None,
                    client_ip: IpAddr::from([127, 0, 0, 1]),
                    now_ms: chaincall_wallet::db::now_ms(),
                };
                service.numbers().claim(claim).await.unwrap()
            })
        })
        .collect();
    let mut got = std::collections::BTreeSet::new();
    for t in tasks {
        assert!(
            got.insert(t.await.unwrap()),
            "a number was handed out twice"
        );
    }
    assert_eq!(got.len(), 16);
    s.stop().await;
}

/// Device recovery (issue 14 item 4), the phone's side in one call.
#[allow(clippy::too_many_arguments)]
async fn recover(
    s: &Server<EmbeddedChain>,
    phone: &Phone,
    number: &str,
    code_text: Option<&str>,
    r: &Receipt,
) -> Result<chaincall_wallet::OnboardingStatus, String> {
    let mut request = NumberRequest::named(number);
    if let Some(c) = code_text {
        request = request.with_code(c);
    }
    chaincall_wallet::client::recover_phone(
        &s.client,
        &*s.chain,
        s.contract,
        &s.server_key,
        &phone.wallet,
        &phone.identity,
        &request,
        r.clone(),
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| code(&e))
}

async fn ask_recovery_code(
    s: &Server<EmbeddedChain>,
    phone: &Phone,
    number: &str,
    r: &Receipt,
) -> Result<(), String> {
    chaincall_wallet::client::request_recovery_code(
        &s.client,
        &s.server_key,
        &phone.wallet,
        &phone.identity.public(),
        number,
        r.clone(),
    )
    .await
    .map_err(|e| code(&e))
}

/// Whether the `subscriber` row of `number` (hashes only) is that of `password`.
async fn sip_password_works(s: &Server<EmbeddedChain>, number: &str, password: &str) -> bool {
    let settings = s.service.settings();
    s.sip
        .get(number, &settings.sip_domain)
        .await
        .unwrap()
        .is_some_and(|row| {
            row.ha1 == chaincall_wallet::subscriber::ha1(number, &settings.realm, password)
        })
}

/// The SIP password `/v1/credentials` gives the holder of `phone`'s on-chain key.
async fn fetch_sip_password(s: &Server<EmbeddedChain>, phone: &Phone) -> Result<String, String> {
    let number = chaincall_identity::PhoneNumber::parse(&phone.number).unwrap();
    s.client
        .sip_password(&phone.identity, &number)
        .await
        .map(|p| p.to_string())
        .map_err(|e| code(&e))
}

/// Alice loses her phone's key file. With her original receipt ("restore purchases") and a fresh
/// code sent to her number, a new device gets the number back with a new wallet and key: the old
/// entry revoked, the number reserved, the new wallet funded once, the new key approved and a new
/// SIP password that the lost device (which holds the same receipt) cannot derive. Bob, who
/// pinned her old key, sees a proven re-registration. Strangers are refused before anything is
/// funded: a new receipt, no or a wrong code, a code for another number, another number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_device_recovers_its_number_with_the_original_receipt_and_a_fresh_code() {
    use chaincall_chain::verified::{HeaderTrust, LookupError, PinnedLookup};
    use chaincall_identity::continuity::{PinUpdate, RecordedChange};
    let dir = tempfile::tempdir().unwrap();
    let Some(smsc) = Smsc::start(&dir.path().join("sms.txt"), None) else {
        return;
    };
    let s = sms_server(dir.path(), smsc.port, "codes_per_address_per_hour = 100\n").await;
    let alice = Phone::new();
    let (pa, ra) = receipt();
    ask_code(&s, &alice, &alice.number, &ra).await.unwrap();
    let code_a = smsc.code_for(&alice.number, 1).await;
    with_code(&s, &alice, &alice.number, &code_a, &ra)
        .await
        .unwrap();
    let old_password = fetch_sip_password(&s, &alice).await.unwrap();
    assert!(sip_password_works(&s, &alice.number, &old_password).await);
    // Bob looks Alice up and pins her key.
    let genesis = s.chain.block_header(0).await.unwrap().hash_slow();
    let trust = HeaderTrust::checkpoint(0, genesis);
    let alice_name = chaincall_identity::IdentityName::parse(&alice.number).unwrap();
    let mut bob_pins = PinnedLookup::new(s.contract);
    let pinned = bob_pins
        .lookup(&*s.chain, &trust, &alice_name, None)
        .await
        .unwrap();
    assert_eq!(pinned.update, PinUpdate::Pinned);

    // Alice's key file is gone; her new device has a new wallet and key.
    let new = Phone {
        number: alice.number.clone(),
        ..Phone::new()
    };
    let server_balance = || async { s.chain.balance(s.service.server_address()).await.unwrap() };
    let before = server_balance().await;
    let unchanged = || async {
        let entry = s.chain.get_client(s.contract, alice.id()).await.unwrap();
        assert_eq!(entry.approved_key(), Some(alice.identity.public()));
        assert_eq!(server_balance().await, before, "something was funded");
        let row = s.service.db().get(&pa.order_id).await.unwrap().unwrap();
        assert_eq!(row.state.as_str(), "provisioned");
        assert_eq!(row.wallet, alice.wallet.address());
    };

    // A stranger with a new receipt: no code is sent, nothing is recovered, the receipt stays
    // unconsumed.
    let mallory = Phone {
        number: alice.number.clone(),
        ..Phone::new()
    };
    let (_, rm) = receipt();
    assert_eq!(
        ask_recovery_code(&s, &mallory, &alice.number, &rm)
            .await
            .unwrap_err(),
        "not_recoverable"
    );
    assert_eq!(
        recover(&s, &mallory, &alice.number, Some("123456"), &rm)
            .await
            .unwrap_err(),
        "not_recoverable"
    );
    unconsumed(&s, &rm).await;
    // Onboarding her number with it is refused before funding, pointing at recovery.
    let e = onboard(&s, &mallory, &NumberRequest::named(&alice.number), &rm)
        .await
        .unwrap_err();
    assert_eq!(code(&e), "number_taken");
    assert!(e.to_string().contains("phone recover"), "{e}");
    unconsumed(&s, &rm).await;

    // The original receipt without a code, or with a code sent to another number (Bob's), or
    // for another number: refused.
    let bob = Phone::new();
    let (_, rb) = receipt();
    ask_code(&s, &bob, &bob.number, &rb).await.unwrap();
    let code_b = smsc.code_for(&bob.number, 1).await;
    assert_eq!(
        recover(&s, &new, &alice.number, None, &ra)
            .await
            .unwrap_err(),
        "code_required"
    );
    assert_eq!(
        recover(&s, &new, &alice.number, Some(&code_b), &ra)
            .await
            .unwrap_err(),
        "code_invalid"
    );
    assert_eq!(
        recover(&s, &new, &bob.number, Some(&code_b), &ra)
            .await
            .unwrap_err(),
        "not_recoverable"
    );
    unchanged().await;

    // The real recovery: a fresh code to Alice's number, bound to the new wallet and key.
    ask_recovery_code(&s, &new, &alice.number, &ra)
        .await
        .unwrap();
    let code_r = smsc.code_for(&alice.number, 2).await;
    let done = recover(&s, &new, &alice.number, Some(&code_r), &ra)
        .await
        .unwrap();
    assert_eq!(done.state, "provisioned");
    assert_eq!(done.phone.as_deref(), Some(alice.number.as_str()));
    let entry = s.chain.get_client(s.contract, alice.id()).await.unwrap();
    assert_eq!(entry.approved_key(), Some(new.identity.public()));
    assert_eq!(entry.wallet, Some(new.wallet.address()));
    // The lost device's SIP password no longer works, and it cannot fetch the new one (its key
    // is revoked); the new device can, sealed to its new key.
    assert!(!sip_password_works(&s, &alice.number, &old_password).await);
    assert_eq!(
        fetch_sip_password(&s, &alice).await.unwrap_err(),
        "bad_proof_of_possession"
    );
    let new_password = fetch_sip_password(&s, &new).await.unwrap();
    assert_ne!(new_password, old_password);
    assert!(sip_password_works(&s, &alice.number, &new_password).await);
    // Safe to rerun, and never funded twice: one funding for the onboarding, one for the
    // recovery.
    let again = recover(&s, &new, &alice.number, Some(&code_r), &ra)
        .await
        .unwrap();
    assert_eq!(again.state, "provisioned");
    let funded: Vec<_> = s
        .service
        .db()
        .funding_txs(&pa.order_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, status)| status == "mined")
        .collect();
    assert_eq!(funded.len(), 2, "{funded:?}");
    // The lost device's own requests are refused now.
    let e = s.post_onboard(&alice, &ra).await.unwrap_err();
    assert_eq!(code(&e), "receipt_reused");

    // Bob's next lookup: a proven re-registration once the checkpoint vouches for the blocks
    // (with the old checkpoint it is left to the user, and the old pin stays).
    let LookupError::UnconfirmedKeyChange(change) = bob_pins
        .lookup(&*s.chain, &trust, &alice_name, None)
        .await
        .unwrap_err()
    else {
        panic!("expected an unconfirmed key change");
    };
    assert!(matches!(
        change.claimed.as_slice(),
        [RecordedChange::Reregistered { .. }]
    ));
    let head = s.chain.block_number().await.unwrap();
    let newer =
        HeaderTrust::checkpoint(head, s.chain.block_header(head).await.unwrap().hash_slow());
    let after = bob_pins
        .lookup(&*s.chain, &newer, &alice_name, None)
        .await
        .unwrap();
    assert!(
        matches!(&after.update, PinUpdate::Reregistered { old: Some(old), .. } if *old == alice.identity.public()),
        "{:?}",
        after.update
    );
    assert_eq!(after.usable_key(), Some(new.identity.public()));
    s.stop().await;
}

/// With operator-assigned numbers the ownership proof is the operator's: the admin API authorises
/// one recovery of a provisioned number, after checking ownership out of band.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_numbers_are_recovered_with_the_operators_authorisation() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_in(dir.path(), "").await;
    let alice = Phone::new();
    let (_, ra) = receipt();
    let done = onboard(&s, &alice, &NumberRequest::named(&alice.number), &ra)
        .await
        .unwrap();
    assert_eq!(done.state, "provisioned");
    let new = Phone {
        number: alice.number.clone(),
        ..Phone::new()
    };
    assert_eq!(
        recover(&s, &new, &alice.number, None, &ra)
            .await
            .unwrap_err(),
        "recovery_not_authorized"
    );
    let path = format!("/v1/admin/subscribers/{}/recovery", alice.number);
    let (status, _) = s.admin("POST", &path, None).await;
    assert_eq!(status, 401);
    let (status, body) = s
        .admin(
            "POST",
            "/v1/admin/subscribers/+15557777777/recovery",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_recoverable"))
    );
    let (status, body) = s.admin("POST", &path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let done = recover(&s, &new, &alice.number, None, &ra).await.unwrap();
    assert_eq!(done.state, "provisioned");
    let entry = s.chain.get_client(s.contract, alice.id()).await.unwrap();
    assert_eq!(entry.approved_key(), Some(new.identity.public()));
    // The authorisation was for one recovery: a third device needs another.
    let third = Phone {
        number: alice.number.clone(),
        ..Phone::new()
    };
    assert_eq!(
        recover(&s, &third, &alice.number, None, &ra)
            .await
            .unwrap_err(),
        "recovery_not_authorized"
    );
    s.stop().await;
}

/// Onboardings left in `funded` by the old server, which funded before checking the number (the
/// number approved for another wallet, so `addClient` can never succeed), are failed by the
/// worker with `number_taken` and the error set, instead of waiting with `last_error: null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funded_onboardings_of_a_taken_number_are_failed_with_number_taken() {
    let dir = tempfile::tempdir().unwrap();
    let s = server_in(dir.path(), "").await;
    let alice = Phone::new();
    let (pa, ra) = receipt();
    onboard(&s, &alice, &NumberRequest::named(&alice.number), &ra)
        .await
        .unwrap();
    // What the old server left behind: another receipt for the same number, funded.
    let stale = Phone {
        number: alice.number.clone(),
        ..Phone::new()
    };
    let (ps, _) = receipt();
    let now = chaincall_wallet::db::now_ms();
    sqlx::query(
        "INSERT INTO onboarding (receipt_id, token_sha256, receipt_hash, product_id, purchase_time, phone, wallet, key_type, public_key, state, attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'funded', 0, 0, $10, $10)",
    )
    .bind(&ps.order_id)
    .bind(ps.token_sha256_hex())
    .bind(ps.chain_receipt_hash().to_string())
    .bind(&ps.product_id)
    .bind(ps.purchase_time)
    .bind(&stale.number)
    .bind(stale.wallet.address().to_checksum(None))
    .bind(i64::from(stale.identity.public().tag()))
    .bind(hex::encode(stale.identity.public().to_bytes()))
    .bind(now)
    .execute(s.service.db().pool())
    .await
    .unwrap();
    s.service.work_once().await.unwrap();
    let row = s.service.db().get(&ps.order_id).await.unwrap().unwrap();
    assert_eq!(row.state.as_str(), "failed");
    assert_eq!(row.failure_code.as_deref(), Some("number_taken"));
    assert_eq!(row.last_error_code.as_deref(), Some("number_taken"));
    assert!(row.last_error.is_some());
    // Alice's own provisioned row is untouched.
    let mine = s.service.db().get(&pa.order_id).await.unwrap().unwrap();
    assert_eq!(mine.state.as_str(), "provisioned");
    s.stop().await;
}

//! `chaincall phone recover --receipt FILE`: device recovery after the key file is lost
//! (docs/onboarding.md, "Device recovery").
//!
//! The new device makes new keys (as `init` does) unless a key file is there already (a rerun),
//! proves it owns the number afresh (a code sent by SMS, typed at a prompt; or the operator's
//! authorisation for assigned numbers) and asks the wallet server to move the number to its wallet
//! and key (`chaincall_wallet::client::recover_phone`). The SIP password then comes from
//! `/v1/credentials`, signed by the new on-chain key: the server derives it at a generation of its
//! own, made after the old key was revoked, so the lost device (which holds the same receipt)
//! can neither derive nor fetch it. A child module of `phone`: it reuses the phone's configuration
//! and key file handling as they are.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use chaincall_chain::{ClientId, KeystoreChain};
use chaincall_identity::{IdentityName, KeyStatus};

use super::{
    ChainAccess as _, Config, make_key_file, read_receipt, sms_code, taken_hint, wallet_server,
};

/// Runs `phone recover`.
pub(super) async fn run(cfg: &mut Config, receipt_path: &Path, pass: &str) -> Result<()> {
    let number = cfg
        .number()
        .context("recovery needs the number to recover as the config's `number`")?
        .clone();
    let receipt = read_receipt(receipt_path)?;
    let mut secrets = if cfg.key_file.exists() {
        let secrets = cfg.load_secrets(pass)?;
        eprintln!(
            "using the keys in {} (identity key {}, wallet {})",
            cfg.key_file.display(),
            secrets.own_fingerprint(cfg.number.as_ref()),
            secrets.wallet.address()
        );
        secrets
    } else {
        let secrets = make_key_file(cfg, pass).await?;
        eprintln!(
            "made new keys for {number} in {} (identity key {}, wallet {})",
            cfg.key_file.display(),
            secrets.own_fingerprint(cfg.number.as_ref()),
            secrets.wallet.address()
        );
        secrets
    };
    let chain = cfg.chain().await?;
    let id = ClientId::of(&IdentityName::Phone(number.clone()));
    let entry = chain
        .get_client(cfg.contract, id)
        .await
        .with_context(|| format!("reading {number}'s keystore entry"))?;
    let ours = entry.status == KeyStatus::Approved
        && entry.wallet == Some(secrets.wallet.address())
        && entry.approved_key() == Some(secrets.identity.public());
    if ours && secrets.sip_password.is_some() {
        println!(
            "{number} is this phone's already: its key is approved on chain for wallet {}; nothing to recover",
            secrets.wallet.address()
        );
        return Ok(());
    }
    let (client, server_key, info, wallet_url) = wallet_server(cfg, &*chain, "recover").await?;
    if ours {
        // Recovered by an earlier run that stopped before storing the SIP password.
        return store_sip_password(cfg, &client, &mut secrets, pass, &wallet_url).await;
    }
    let mut request = chaincall_wallet::NumberRequest::named(number.as_str());
    if info["number_verifier"].as_str() == Some("sms_code") {
        let server = (&client, &server_key, wallet_url.as_str());
        let code = sms_code(server, &secrets, &number, &receipt, true).await?;
        request = request.with_code(&code);
    } else {
        eprintln!(
            "the wallet server assigns numbers: the operator must have authorised recovering \
             {number} (after checking it is yours)"
        );
    }
    eprintln!("asking {wallet_url} to revoke the old key and move {number} to this phone");
    let status = chaincall_wallet::client::recover_phone(
        &client,
        &*chain,
        cfg.contract,
        &server_key,
        &secrets.wallet,
        &secrets.identity,
        &request,
        receipt,
        Duration::from_secs(120),
    )
    .await
    .map_err(|e| taken_hint(e, number.as_str()))
    .with_context(|| format!("recovering {number} at {wallet_url}"))?;
    anyhow::ensure!(
        status.state == "provisioned",
        "recovery ended in state {:?}",
        status.state
    );
    store_sip_password(cfg, &client, &mut secrets, pass, &wallet_url).await?;
    println!(
        "recovered {number}: the old key is revoked and this phone's key {} is approved on chain \
         (wallet {}); the new SIP password is stored in {} and the old one no longer works. \
         Contacts are told the key was replaced after the operator revoked the old one; \
         compare safety numbers with them again (`chaincall phone contact show NUMBER`).",
        secrets.own_fingerprint(cfg.number.as_ref()),
        secrets.wallet.address(),
        cfg.key_file.display()
    );
    Ok(())
}

/// Fetches the recovered number's SIP password (sealed to our new on-chain key) and stores it in
/// the key file.
async fn store_sip_password(
    cfg: &Config,
    client: &chaincall_wallet::WalletClient,
    secrets: &mut chaincall_phone::PhoneSecrets,
    pass: &str,
    wallet_url: &str,
) -> Result<()> {
    let number = cfg.number()?.clone();
    let password = client
        .sip_password(&secrets.identity, &number)
        .await
        .with_context(|| format!("fetching the SIP password of {number} from {wallet_url}"))?;
    secrets.sip_password = Some(password);
    secrets
        .save(&cfg.key_file, pass, true)
        .with_context(|| format!("cannot update {}", cfg.key_file.display()))
}

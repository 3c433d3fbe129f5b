//! `chaincall demo`: a whole chaincall network on one machine and a real end-to-end encrypted call.
//!
//! On the embedded chain (default) or a node (`--rpc`): deploy the keystore; publish sipd's
//! identity; start the wallet-management server (HTTP), sipd (SIP over TLS-PSK) and two phones as
//! network services on 127.0.0.1; onboard both phones with store-signed receipts (funding,
//! `addClient`, approval, SIP credentials); register both over TLS-PSK with digest auth; alice looks
//! bob's key up with a verified proof, calls him with MIKEY-PKE in the SDP, and both send Opus audio
//! over SRTP. The demo then checks that each side received exactly what the other sent, and prints
//! the paper's Table I figures with where each millisecond of set-up went. Any failed check exits
//! non-zero. The network and the checks are `chaincall_devnet::demo`'s; this module parses the flags
//! and prints the report.

use std::path::PathBuf;

use anyhow::{Result, bail};
use chaincall_devnet::demo::{self, DemoOptions};
use chaincall_devnet::operator_key;
use chaincall_phone::negotiation::KeyMode;
use clap::Args;

/// Run a whole chaincall network on this machine and place one end-to-end encrypted call.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Use this Ethereum JSON-RPC node (e.g. anvil) instead of the embedded chain. The operator
    /// key must be funded there (`--operator-key`; default: anvil's first dev account).
    #[arg(long)]
    rpc: Option<String>,
    /// Hex secp256k1 key of the operator (deploys the keystore, funds and approves).
    #[arg(long)]
    operator_key: Option<String>,
    /// Append each SRTP stream's master key to FILE (`ssrc=… profile=… inline=…`, RFC 4568
    /// encoding) so a capture can be decrypted elsewhere. Debugging only: the file decrypts the call.
    #[arg(long, value_name = "FILE")]
    keylog: Option<PathBuf>,
    /// Key mode: `pke` (the paper's, default), `dh-sign` (forward secrecy) or `zrtp` (chain-bound).
    #[arg(long, default_value = "pke")]
    mode: KeyMode,
    /// Seconds of audio each side sends.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Alice sends this WAV file (8 kHz, 16-bit mono PCM, or G.711) instead of the built-in
    /// speech-like signal.
    #[arg(long, value_name = "WAV")]
    audio: Option<PathBuf>,
    /// Keep the network's files here (databases, keys, recorded WAVs) instead of a temporary folder.
    /// A previous demo's files there are replaced; a folder holding anything else is refused.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Put alice and bob each behind their own NAT router (network namespaces), sipd and rtpengine
    /// on a public segment, the media through rtpengine; needs root: `sudo chaincall demo --nat`.
    #[arg(long)]
    nat: bool,
    /// With --nat: write the capture taken at the relay's public interface to FILE (pcap).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
}

/// Runs `chaincall demo`.
pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let options = DemoOptions {
        rpc: args.rpc,
        mode: args.mode,
        seconds: args.seconds,
        audio: args.audio,
        out: args.out,
        keylog: args.keylog,
        tls_keylog: crate::ssl_keylog_file(),
        nat: args.nat,
        pcap: args.pcap,
    };
    // Bad flags are refused before the warning, the operator key and the network.
    options.check()?;
    if let Some(k) = &options.keylog {
        eprintln!(
            "warning: writing SRTP master keys to {}: anyone holding it can decrypt the call",
            k.display()
        );
    }
    let operator = operator_key(args.operator_key.as_deref())?;
    // Multi-thread: sipd's key directory bridges its sync handshake core to async chain reads.
    let report = crate::block_on(demo::run(operator, &options))??;
    crate::print_view(&report, args.json, |r| r.to_json())?;
    if !report.failed.is_empty() {
        bail!(
            "{} check(s) failed: {}",
            report.failed.len(),
            report.failed.join("; ")
        );
    }
    Ok(())
}

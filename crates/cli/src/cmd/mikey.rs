//! `chaincall mikey`: operator tools for MIKEY (RFC 3830) messages as carried in SDP (RFC 4567).
//!
//! `inspect` decodes a message given as base64 (or a whole `a=key-mgmt:mikey ...` line), from the
//! argument or from stdin, and prints every payload; `--json` prints the same for machines. Bad
//! input exits non-zero with one line naming the byte offset (or base64 character) at fault.
//! Key material is never printed. The views are `chaincall_mikey::inspect`'s.

use std::io::Read as _;

use anyhow::{Context as _, anyhow};
use chaincall_mikey::inspect::{Inspection, input_bytes};
use clap::{Args, Subcommand};

/// Arguments of `chaincall mikey`.
#[derive(Debug, Args)]
pub(crate) struct MikeyArgs {
    #[command(subcommand)]
    command: MikeyCommand,
}

#[derive(Debug, Subcommand)]
enum MikeyCommand {
    /// Decode a MIKEY message and print every payload.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The message in base64, or an `a=key-mgmt:mikey <base64>` line; `-` or nothing reads stdin.
    input: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `chaincall mikey …`.
pub(crate) fn run(args: MikeyArgs) -> anyhow::Result<()> {
    let MikeyCommand::Inspect(args) = args.command;
    let text = match args.input {
        None => read_stdin()?,
        Some(s) if s == "-" => read_stdin()?,
        Some(s) => s,
    };
    let bytes = input_bytes(&text).map_err(|e| anyhow!(e))?;
    let view = Inspection::decode(&bytes).map_err(|e| anyhow!("{e}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view.to_json())?);
    } else {
        print!("{view}");
    }
    Ok(())
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading stdin")?;
    Ok(s)
}

//! `chaincall phone ui`'s arguments (clap) and runner: the binary adds one subcommand variant and
//! hands over the configuration, the opened keys and the chain view it builds for every phone
//! command (feature `cli`).

use std::path::PathBuf;

use chaincall_chain::KeystoreChain;
use chaincall_phone::calls::ChainView;
use chaincall_phone::{PhoneFileConfig, PhoneSecrets};
use clap::Args;

use crate::shell::{UiError, UiOptions};

/// Open the interactive softphone: registration state, number entry, incoming calls with the
/// caller's proven identity, the call in progress, the call's report (docs/softphone.md).
///
/// Keyboard only: digits and + type a number, Enter dials, `a` answers, `d` declines, `h` hangs
/// up, `q` quits (Ctrl-C hangs up and quits). Every call rings here: the config's `auto_answer`
/// is for `listen`. While the screen is up the log goes to --log FILE (or is discarded).
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Append the log (stderr) to FILE while the screen is up (mode 0600). Default: discarded.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

impl UiArgs {
    /// Runs the softphone ([`crate::run`]); `tls_keylog` is the binary's `SSLKEYLOGFILE`.
    pub async fn run<C: KeystoreChain + 'static>(
        self,
        cfg: &PhoneFileConfig,
        secrets: &PhoneSecrets,
        view: ChainView<C>,
        tls_keylog: Option<PathBuf>,
    ) -> Result<(), UiError> {
        let options = UiOptions {
            log: self.log,
            tls_keylog,
        };
        crate::run(cfg, secrets, view, options).await
    }
}

#!/usr/bin/env bash
# Installs, idempotently, every real peer chaincall's tests run against, then runs the whole suite
# with CHAINCALL_REQUIRE_PEERS=1 (a test whose peer is missing fails instead of skipping).
#
#   Debian : tshark, sipp (sip-tester), baresip, Kamailio (+ sqlite, tls, secsipid, postgres modules),
#            PostgreSQL (the throwaway clusters of the wallet tests and `bench sipd --location postgres`),
#            openssl, libsrtp2,
#            secsipidx (the STIR/SHAKEN tool the PASSporT interop tests run),
#            libnet-smpp-perl (the SMS centre the wallet's one-time-code tests send SMPP to),
#            rtpengine-daemon (the media relay), iptables + iproute2 (the namespace test network),
#            dnsmasq-base (the DNS server on 127.0.0.1 the sipd-to-sipd DNS SRV test asks),
#            libopus-dev (Opus, linked through pkg-config by the media crate),
#            libasound2-dev (ALSA, for cpal in the audio-device crate; its tests use ALSA's
#            file/null plugins, no sound card), linphone-cli (linphonec, the ZRTP interop peer),
#            tmux (the terminal softphone's test drives it),
#            espeak-ng (the speech `bench audio` sends),
#            jackd2 (the sound server whose dummy driver is baresip's clocked sound card there)
#   npm    : anvil (@foundry-rs/anvil) and solcjs (solc), pinned in tools/package.json
#   PyPI   : pylibsrtp (libsrtp 2.7 + OpenSSL), pesq + numpy (ITU-T P.862 for `bench audio`),
#            JACK-Client (`bench audio`'s mouth-to-ear tap), into the venv .venv/
#
# Usage: scripts/test.sh [extra arguments for cargo nextest run]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

echo "== installing Debian packages"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer before installing so nothing prompts.
echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends \
  ca-certificates pkg-config libssl-dev openssl sqlite3 libopus-dev libasound2-dev \
  tshark sip-tester baresip-core secsipidx \
  kamailio kamailio-sqlite-modules kamailio-tls-modules \
  kamailio-secsipid-modules kamailio-postgres-modules \
  postgresql \
  libsrtp2-dev \
  linphone-cli \
  perl libnet-smpp-perl \
  rtpengine-daemon iptables iproute2 \
  dnsmasq-base \
  tmux espeak-ng jackd2
# rtpengine-daemon's postinst enables and starts a system rtpengine (kernel table 0, NG on
# localhost:2223). The tests start their own in the foreground (--config-file=none, their own
# ports), so a system one is not needed: stop and disable it rather than leave it running.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now rtpengine-daemon.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/rtpengine-daemon ]; then
  $sudo /etc/init.d/rtpengine-daemon stop >/dev/null 2>&1 || true
  $sudo update-rc.d rtpengine-daemon disable >/dev/null 2>&1 || true
fi

echo "== installing npm peers (anvil, solc)"
# `npm install` (not `npm ci`): @foundry-rs/anvil declares its per-platform binaries as optional
# dependencies without versions, which npm 11 cannot record in a lockfile that `npm ci` accepts.
# The versions are still pinned by tools/package.json and tools/package-lock.json, which holds
# what npm 11 writes (the other platforms' binaries as optional entries), so a run leaves it as is.
(cd tools && npm install --no-audit --no-fund --loglevel=error)

echo "== installing Python peers into .venv (pylibsrtp, pesq)"
if [ ! -x .venv/bin/python3 ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -r tools/requirements.txt

# Where the tests find the peers (crates/testkit reads these).
anvil_bin="$root/tools/node_modules/@foundry-rs/anvil-linux-amd64/bin"
export PATH="$anvil_bin:$root/tools/node_modules/.bin:$root/.venv/bin:$PATH"
export CHAINCALL_PYTHON="$root/.venv/bin/python3"
export CHAINCALL_REQUIRE_PEERS=1
# A one-shot build gains nothing from the incremental cache, which would double the target dir.
export CARGO_INCREMENTAL=0

# `chaincall bench …` and its tests need the chaincall crate's `bench` feature (off in the shipping
# binary); the suite builds with it, and clippy also checks the default build without it.
bench=(--features chaincall/bench)

echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked "${bench[@]}" -- -D warnings
cargo clippy -p chaincall --all-targets --locked -- -D warnings
# The phone links the wallet crate without its `server` feature (client and wire types only); the
# integration tests, which need the server, are skipped there.
cargo clippy -p chaincall-wallet --no-default-features --all-targets --locked -- -D warnings
# Every public item has a doc line, and its links resolve: a broken one fails here.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --locked "${bench[@]}"

echo "== tests"
# Unit, integration and binary tests (criterion benches are built by clippy above, not run here).
# chaincall's bench_feature test checks that the default build depends on no benchmark aid.
cargo nextest run --workspace --locked --no-fail-fast "${bench[@]}" "$@"
cargo test --workspace --doc --locked "${bench[@]}"
echo "== all tests passed"

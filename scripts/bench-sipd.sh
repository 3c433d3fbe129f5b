#!/usr/bin/env bash
# Side-by-side stateful-proxy benchmark: sipp uac -> PROXY -> sipp uas over UDP on 127.0.0.1,
# PROXY = chaincall sipd, then Kamailio (same routing: Record-Route, stateful relay to a static
# next hop), stepping the call rate up. A step passes at >= 99.9 % successful calls.
#
# Usage: scripts/bench-sipd.sh [RATES...]      (default: 200 400 600 800 1000 1200 1500 2000)
# Env:   SECS=10 (seconds per step), SIPD=path/to/sipd-binary (default: release build of the
#        chaincall-sipd example `sipd`, the same server as `chaincall sipd serve`)
# Output: one JSON object per step on stdout, a summary at the end; logs in $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=("${@:-200 400 600 800 1000 1200 1500 2000}")
read -r -a RATES <<< "${RATES[*]}"
SECS=${SECS:-10}
WORK=$(mktemp -d /tmp/bench-sipd.XXXXXX)
PROXY_PORT=${PROXY_PORT:-25060}
UAS_PORT=${UAS_PORT:-25070}
UAC_PORT=${UAC_PORT:-25080}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${SIPD:-}" ]; then
  cargo build --release -q -p chaincall-sipd --example sipd
  SIPD="$CARGO_TARGET_DIR/release/examples/sipd"
fi
command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

UAS_PID=""
start_uas() {
  sipp -sn uas -i 127.0.0.1 -p "$UAS_PORT" -nostdin >/dev/null 2>&1 &
  UAS_PID=$!; PIDS+=("$UAS_PID")
  sleep 0.5
}
stop_uas() { kill "$UAS_PID" 2>/dev/null || true; wait "$UAS_PID" 2>/dev/null || true; }

kamailio_cfg() {
  local mpath
  mpath=$(dirname "$(find /usr/lib -name tm.so -path '*kamailio*' | head -1)")
  cat > "$WORK/kamailio.cfg" <<EOF
#!KAMAILIO
debug=0
log_stderror=yes
fork=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:$PROXY_PORT
mpath="$mpath/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "textops.so"
request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (has_totag()) {
    if (loose_route()) { t_relay(); exit; }
    if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
    sl_send_reply("404", "Not here"); exit;
  }
  if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
  t_check_trans();
  if (is_method("INVITE")) { record_route(); }
  \$du = "sip:127.0.0.1:$UAS_PORT";
  if (!t_relay()) { sl_reply_error(); }
}
EOF
}

run_step() { # name rate -> prints JSON, returns 0 if >= 99.9 %
  local name=$1 rate=$2 calls=$(( $2 * SECS ))
  rm -f "$WORK/uac.csv"
  sipp -sn uac "127.0.0.1:$PROXY_PORT" -i 127.0.0.1 -p "$UAC_PORT" -r "$rate" -m "$calls" -l $(( rate * 4 )) \
    -d 0 -nostdin -timeout $(( SECS * 3 + 20 ))s -trace_stat -stf "$WORK/uac.csv" >/dev/null 2>&1 || true
  python3 - "$WORK/uac.csv" "$name" "$rate" "$calls" <<'PY'
import sys
path, name, rate, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
try:
    lines = open(path).read().strip().splitlines()
    head, last = lines[0].split(';'), lines[-1].split(';')
    col = lambda n: int(last[head.index(n)])
    ok, failed = col('SuccessfulCall(C)'), col('FailedCall(C)')
    elapsed = last[head.index('ElapsedTime(C)')]
except Exception:
    ok, failed, elapsed = 0, calls, "?"
ratio = ok / calls if calls else 0
print(f'{{"server": "{name}", "rate": {rate}, "calls": {calls}, "ok": {ok}, "failed": {failed}, "success": {ratio:.4f}, "elapsed": "{elapsed}"}}', flush=True)
sys.exit(0 if ratio >= 0.999 else 1)
PY
}

declare -A BEST
for server in sipd kamailio; do
  BEST[$server]=0
  if [ "$server" = sipd ]; then
    "$SIPD" --listen "udp:127.0.0.1:$PROXY_PORT" --auth none \
      --static-route "127.0.0.1:$UAS_PORT" 2>"$WORK/sipd.log" &
    PIDS+=($!); SERVER_PID=$!
  else
    command -v kamailio >/dev/null || { echo '{"server": "kamailio", "error": "not installed"}'; continue; }
    kamailio_cfg
    kamailio -f "$WORK/kamailio.cfg" -DD -E -m 512 -M 16 2>"$WORK/kamailio.log" &
    PIDS+=($!); SERVER_PID=$!
  fi
  sleep 1
  start_uas
  for rate in "${RATES[@]}"; do
    if run_step "$server" "$rate"; then BEST[$server]=$rate; else break; fi
  done
  stop_uas
  kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true
  sleep 1
done
echo "{\"summary\": {\"sipd_calls_per_s\": ${BEST[sipd]}, \"kamailio_calls_per_s\": ${BEST[kamailio]:-0}, \"secs_per_step\": $SECS, \"threshold\": 0.999}}"

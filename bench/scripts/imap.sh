#!/usr/bin/env bash
# IMAP access-tier benchmark of pfrouter against Dovecot, on this machine,
# on loopback only (see bench/README.md, "IMAP access").
#
#   bench/scripts/imap.sh            # from anywhere; about 3-5 minutes
#
# It (a) installs dovecot-imapd if missing and runs a standalone Dovecot
# from a config under a temp dir (passwd-file user alice on the dovecot
# uid, Maildir); (b) runs `pfrouter serve` on a copy of examples/contoso.yaml
# with every port 0 (the banner gives the bound ones): ex1 holds alice's
# mailbox, ex2 is a same-site front end that proxies to ex1; (c) puts the
# same 1,000 messages into alice's INBOX on both (POPULATE=append: IMAP
# APPEND of identical bytes to both, the default; POPULATE=smtp: pfrouter
# gets them over SMTP with bench/smtpload at ex1 and the script polls until
# INBOX holds them all); (d) runs bench/imapload in login, fetch-headers and
# fetch-bodies modes against Dovecot, pfrouter direct (ex1) and pfrouter
# proxied (ex2 -> ex1), REPS times each, keeping the median; (e) prints a
# table and the ratios pfrouter/Dovecot and proxied/direct. Every process
# it starts is stopped on exit.
#
# TLS: by default no TLS on the client side for either server (Dovecot
# ssl = no, pfrouter access.login_type PlainTextLogin), so both compare as
# IMAP servers, not as TLS stacks. pfrouter's proxy hop (ex2 -> ex1) always
# uses STARTTLS, by design: that cost is part of the proxied numbers.
# TLS=1 runs everything with STARTTLS instead (Dovecot ssl = yes with a
# self-signed certificate, pfrouter SecureLogin, imapload -starttls).
#
# Knobs (environment): MSGS (messages in the mailbox, default 1000), SIZE
# (bytes per message, default 8192), LOGIN_N (logins per run, default
# 2000), LOGIN_C (connections, default 8), FETCH_N (FETCH 1:* commands per
# run, default 30), FETCH_C (sessions, default 1), DUR (time bound per run,
# default 20s), REPS (default 3), DOVECOT_MODE (default: Debian's defaults,
# one process per login and per session; "performance": imap-login
# service_count = 0, the documented high-performance mode), POPULATE,
# TLS, DV_PORT (default 1483), KEEP=1 keeps the temp dir, OUT=dir copies
# the JSON results there.
set -euo pipefail

MSGS=${MSGS:-1000}
SIZE=${SIZE:-8192}
LOGIN_N=${LOGIN_N:-2000}
LOGIN_C=${LOGIN_C:-8}
FETCH_N=${FETCH_N:-30}
FETCH_C=${FETCH_C:-1}
DUR=${DUR:-20s}
REPS=${REPS:-3}
DOVECOT_MODE=${DOVECOT_MODE:-default}
POPULATE=${POPULATE:-append}
TLS=${TLS:-0}
DV_PORT=${DV_PORT:-1483}
USER_NAME=alice
PASS=alice-demo-pw

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/pfimap.XXXXXX)
chmod 755 "$W"
PIDS=()

. "$(dirname "$0")/lib.sh"

cleanup() {
	local rc=$?
	set +e
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	if [ -n "${OUT:-}" ]; then
		mkdir -p "$OUT" && cp "$W"/results/*.json "$OUT"/ 2>/dev/null
	fi
	if [ "${KEEP:-}" = 1 ]; then
		log "kept $W"
	else
		rm -rf "$W"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free "$DV_PORT" || { log "port 127.0.0.1:$DV_PORT is in use; set DV_PORT"; exit 1; }


# ---------------------------------------------------------------- build
log "building pfrouter, imapload, smtpload into $W/bin"
mkdir -p "$W/bin" "$W/results"
(cd "$ROOT" && go build -o "$W/bin/" ./cmd/pfrouter ./bench/imapload ./bench/smtpload)

# ---------------------------------------------------------------- (a) Dovecot
D=$W/dovecot
mkdir -p "$D"
SSL_CONF="ssl = no"
if [ "$TLS" = 1 ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
		-keyout "$D/key.pem" -out "$D/cert.pem" >/dev/null 2>&1
	SSL_CONF="ssl = required
ssl_cert = <$D/cert.pem
ssl_key = <$D/key.pem"
fi
LOGIN_SERVICE=""
if [ "$DOVECOT_MODE" = performance ]; then
	LOGIN_SERVICE="service_count = 0
  process_min_avail = $(nproc)"
fi
log "Dovecot mode $DOVECOT_MODE"
start_dovecot "$D" "$DV_PORT" "$USER_NAME" "$PASS" "$SSL_CONF" "$LOGIN_SERVICE" pfbench-imap
DV_ADDR=127.0.0.1:$DV_PORT

# ---------------------------------------------------------------- (b) pfrouter
LOGIN_TYPE=PlainTextLogin
[ "$TLS" = 1 ] && LOGIN_TYPE=SecureLogin
sed -E 's/127\.0\.0\.1:[0-9]+/127.0.0.1:0/g; s/login_type: [A-Za-z]+/login_type: '"$LOGIN_TYPE"'/' \
	"$ROOT/examples/contoso.yaml" >"$W/org.yaml"
grep -q "login_type: $LOGIN_TYPE" "$W/org.yaml" || { log "could not set access.login_type in the org copy"; exit 1; }
log "starting pfrouter serve (contoso demo, ports 0, login_type $LOGIN_TYPE)"
"$W/bin/pfrouter" serve --config "$W/org.yaml" --data-dir "$W/pfdata" --log-level warn >"$W/pfrouter.log" 2>&1 &
PF_PID=$!
PIDS+=("$PF_PID")
listen_of() { awk -v s="$1" -v k="$2" '$1 == s {for (i = 2; i < NF; i++) if ($i == k) print $(i + 1)}' "$W/pfrouter.log"; }
EX1=
for _ in $(seq 200); do
	EX1=$(listen_of ex1 imap)
	[ -n "$EX1" ] && break
	sleep 0.1
done
[ -n "$EX1" ] || { log "pfrouter did not start"; cat "$W/pfrouter.log" >&2; exit 1; }
EX2=$(listen_of ex2 imap)
EX1_SMTP=$(listen_of ex1 smtp)
log "pfrouter: ex1 imap $EX1 (alice's mailbox), ex2 imap $EX2 (same-site front end, proxies to ex1)"

TLSFLAG=()
[ "$TLS" = 1 ] && TLSFLAG=(-starttls)
imapload() { "$W/bin/imapload" -user "$USER_NAME" -pass "$PASS" "${TLSFLAG[@]}" "$@"; }

# ---------------------------------------------------------------- (c) populate
log "populating $MSGS messages of $SIZE bytes into each INBOX ($POPULATE)"
imapload -addr "$DV_ADDR" -mode append -c 4 -n "$MSGS" -size "$SIZE" -json >"$W/results/populate-dovecot.json"
if [ "$POPULATE" = smtp ]; then
	"$W/bin/smtpload" -addr "$EX1_SMTP" -c 8 -n "$MSGS" -size "$SIZE" -rcpt "$USER_NAME@contoso.example" \
		-from load@example.net -json >"$W/results/populate-pfrouter.json"
else
	imapload -addr "$EX1" -mode append -c 4 -n "$MSGS" -size "$SIZE" -json >"$W/results/populate-pfrouter.json"
fi
for a in "$DV_ADDR" "$EX1" "$EX2"; do
	imapload -addr "$a" -mode wait -expect "$MSGS" -duration 180s >/dev/null
done
log "both INBOXes hold $MSGS messages"

# ---------------------------------------------------------------- (d) load
dovecot_pids() { echo "$DV_PID" $(pgrep -P "$DV_PID" || true); }
pfrouter_pids() { echo "$PF_PID"; }

# run TARGET ADDR MODE: REPS runs; each records its JSON and the server's CPU.
run() {
	local target=$1 addr=$2 mode=$3 r n c t0 t1 out procs
	procs=pfrouter
	[ "$target" = dovecot ] && procs=dovecot
	if [ "$mode" = login ]; then n=$LOGIN_N c=$LOGIN_C; else n=$FETCH_N c=$FETCH_C; fi
	for r in $(seq "$REPS"); do
		out="$W/results/$target-$mode-$r.json"
		# shellcheck disable=SC2046
		t0=$(cpu_ticks $("${procs}_pids"))
		imapload -addr "$addr" -mode "$mode" -c "$c" -n "$n" -duration "$DUR" -json >"$out" ||
			{ log "imapload $mode against $target failed"; cat "$out" >&2; }
		# shellcheck disable=SC2046
		t1=$(cpu_ticks $("${procs}_pids"))
		echo "$((t1 - t0))" >"$W/results/$target-$mode-$r.cpu"
		log "$target $mode #$r: $(jq -r '"\(.ops_ok) ok \(.ops_failed) failed, \(.ops_per_s|floor) ops/s, \(.msgs_per_s|floor) msgs/s, p50 \(.latency.p50_ms) ms"' "$out")"
		jq -r '(.errors // {}) | to_entries[] | "   error x\(.value): \(.key)"' "$out" >&2 || true
	done
}

for mode in login fetch-headers fetch-bodies; do
	run dovecot "$DV_ADDR" "$mode"
	run direct "$EX1" "$mode"
	run proxied "$EX2" "$mode"
done

# ---------------------------------------------------------------- (e) table
tls_note="no TLS to the client (proxy hop ex2->ex1 uses STARTTLS)"
[ "$TLS" = 1 ] && tls_note="STARTTLS on every client session"
echo
echo "IMAP access, $MSGS messages of ~$SIZE bytes ($POPULATE), $tls_note, Dovecot $DOVECOT_MODE mode;"
echo "median of $REPS runs; logins: $LOGIN_C connections, up to $LOGIN_N per run; fetch: $FETCH_C session(s), FETCH 1:* x$FETCH_N"
echo "($(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ), $(dovecot --version | cut -d' ' -f1))"
python3 - "$W/results" "$REPS" "$HZ" <<'EOF'
import json, os, statistics, sys
d, reps, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
targets = [("dovecot", "Dovecot"), ("direct", "pfrouter direct (ex1)"), ("proxied", "pfrouter proxied (ex2)")]
modes = ["login", "fetch-headers", "fetch-bodies"]
def runs(t, m):
    out = []
    for r in range(1, reps + 1):
        try:
            x = json.load(open(os.path.join(d, f"{t}-{m}-{r}.json")))
            x["cpu_ticks"] = int(open(os.path.join(d, f"{t}-{m}-{r}.cpu")).read())
            out.append(x)
        except (OSError, ValueError):
            pass
    return out
def med(t, m, key):
    xs = runs(t, m)
    return statistics.median([x[key] for x in xs]) if xs else float("nan")
def cpu_per(t, m, per):
    # server CPU ms per unit (login or message), median over runs
    vals = []
    for x in runs(t, m):
        n = x["ops_ok"] if per == "op" else x["messages"]
        if n:
            vals.append(1000.0 * x["cpu_ticks"] / hz / n)
    return statistics.median(vals) if vals else float("nan")
def failed(t):
    return sum(x["ops_failed"] for m in modes for x in runs(t, m))
print(f"{'target':<24} {'logins/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'hdr msg/s':>10} {'body msg/s':>11} {'body MB/s':>10} "
      f"{'cpu ms/login':>12} {'cpu us/body':>11} {'fail':>5}")
for t, name in targets:
    print(f"{name:<24} {med(t,'login','ops_per_s'):>9.0f} {statistics.median([x['latency']['p50_ms'] for x in runs(t,'login')] or [0]):>7.2f} "
          f"{statistics.median([x['latency']['p99_ms'] for x in runs(t,'login')] or [0]):>7.2f} "
          f"{med(t,'fetch-headers','msgs_per_s'):>10.0f} {med(t,'fetch-bodies','msgs_per_s'):>11.0f} {med(t,'fetch-bodies','mb_per_s'):>10.1f} "
          f"{cpu_per(t,'login','op'):>12.2f} {1000*cpu_per(t,'fetch-bodies','msg'):>11.1f} {failed(t):>5}")
print()
def ratio(a, b, m, key):
    return med(a, m, key) / med(b, m, key)
print(f"{'ratio':<34} {'logins/s':>9} {'headers':>9} {'bodies':>9}")
for a, b, label in [("direct", "dovecot", "pfrouter direct / Dovecot"), ("proxied", "dovecot", "pfrouter proxied / Dovecot"),
                    ("proxied", "direct", "proxied / direct")]:
    print(f"{label:<34} {ratio(a,b,'login','ops_per_s'):>9.2f} {ratio(a,b,'fetch-headers','msgs_per_s'):>9.2f} {ratio(a,b,'fetch-bodies','msgs_per_s'):>9.2f}")
print("targets: FETCH pfrouter/Dovecot >= 1.00; proxied/direct >= 0.90 (overhead under 10%)")
sz = med("direct", "fetch-bodies", "bytes") / max(med("direct", "fetch-bodies", "messages"), 1)
szd = med("dovecot", "fetch-bodies", "bytes") / max(med("dovecot", "fetch-bodies", "messages"), 1)
print(f"mean BODY[] bytes: pfrouter {sz:.0f}, Dovecot {szd:.0f}")
EOF

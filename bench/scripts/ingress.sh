#!/usr/bin/env bash
# SMTP ingress benchmark of pfrouter against Postfix and a discard sink, on
# this machine, on loopback only (see bench/README.md, "SMTP ingress").
#
#   bench/scripts/ingress.sh            # from anywhere; about 5-8 minutes
#
# It (a) installs Postfix if missing and runs it from its own config dir
# under a temp dir, accepting mail for contoso.example into its durable
# queue and putting it on HOLD (written and fsync'd by cleanup, never
# delivered onwards); (b) runs `pfrouter serve` with bench/scripts/
# ingress-org.yaml, whose folder replica is on the receiving server (ingress
# plus local delivery, no relay); (c) runs bench/smtpsink (go-smtp, discard:
# the protocol ceiling); (d) drives each with bench/smtpload, 10 KB messages
# at 1, 16 and 64 connections; (e) measures end-to-end cross-routing-group
# delivery on the demo organization (ports 0; posts at ex1, folder replica on ex3
# across the tokyo-berlin connector) by counting "delivered" log lines of
# ex3; (f) prints a table and the ratios. Every process it starts is stopped
# on exit.
#
# Knobs (environment): N (messages per run, default 3000), DUR (time bound
# per run, default 30s), SIZE (bytes, default 10240), CONNS (default
# "1 16 64"), E2E_N (default 2000), E2E_C (default 16), E2E_PROFILE=file
# writes a CPU profile of the end-to-end serve process there (samples are
# labelled by server: go tool pprof -tags / -tagfocus server=ex1), KEEP=1
# keeps the temp dir, OUT=dir also copies the JSON results there.
set -euo pipefail

N=${N:-3000}
DUR=${DUR:-30s}
SIZE=${SIZE:-10240}
CONNS=${CONNS:-"1 16 64"}
E2E_N=${E2E_N:-2000}
E2E_C=${E2E_C:-16}
PF_PORT=2615   # pfrouter (bench/scripts/ingress-org.yaml)
PX_PORT=2625   # Postfix
SK_PORT=2635   # smtpsink
RCPT=sales@contoso.example
FROM=load@example.net

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/pfbench.XXXXXX)
chmod 755 "$W"
PIDS=()
POSTFIX_UP=

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
	if [ -n "$POSTFIX_UP" ]; then
		postfix -c "$W/postfix/etc" stop >/dev/null 2>&1
	fi
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

for p in $PF_PORT $PX_PORT $SK_PORT; do
	port_free "$p" || { log "port 127.0.0.1:$p is in use; stop what uses it"; exit 1; }
done

now() { date +%s.%N; }

# ---------------------------------------------------------------- build
log "building pfrouter, smtpload, smtpsink into $W/bin"
mkdir -p "$W/bin" "$W/results"
(cd "$ROOT" && go build -o "$W/bin/" ./cmd/pfrouter ./bench/smtpload ./bench/smtpsink)

# ---------------------------------------------------------------- (a) Postfix
if ! command -v postfix >/dev/null; then
	log "installing Postfix (apt-get)"
	apt-get update -qq
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	echo "postfix postfix/mailname string localhost" | debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi
P=$W/postfix
mkdir -p "$P/etc" "$P/queue" "$P/data"
cp /etc/postfix/master.cf /etc/postfix/dynamicmaps.cf "$P/etc/"
cat >"$P/etc/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $P/etc
queue_directory = $P/queue
data_directory = $P/data
maillog_file = $P/postfix.log
maillog_file_prefixes = /tmp
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = localhost
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = contoso.example
alias_maps =
alias_database =
local_recipient_maps =
biff = no
default_process_limit = 200
# Accepted mail for the test domain goes into the durable queue (cleanup
# writes and fsyncs it before 250) and is put on hold: never delivered.
smtpd_recipient_restrictions = check_recipient_access inline:{ contoso.example=HOLD }, permit_mynetworks, reject_unauth_destination
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
EOF
postconf -c "$P/etc" -F '*/*/chroot = n'
postconf -c "$P/etc" -X -M smtp/inet
postconf -c "$P/etc" -M "127.0.0.1:$PX_PORT/inet=127.0.0.1:$PX_PORT inet n - n - - smtpd"
chown postfix "$P/data"
log "starting Postfix on 127.0.0.1:$PX_PORT (config $P/etc)"
if ! script -qc "postfix -c $P/etc start" /dev/null >"$P/start.out" 2>&1; then
	cat "$P/start.out" >&2
	exit 1
fi
POSTFIX_UP=1
wait_port $PX_PORT Postfix
PX_MASTER=$(tr -d ' ' <"$P/queue/pid/master.pid")
postfix_pids() { echo "$PX_MASTER" $(pgrep -P "$PX_MASTER" || true); }
pfrouter_pids() { echo "$PF_PID"; }
sink_pids() { echo "$SK_PID"; }

# ---------------------------------------------------------------- (b) pfrouter
log "starting pfrouter serve (bench/scripts/ingress-org.yaml) on 127.0.0.1:$PF_PORT"
"$W/bin/pfrouter" serve --config "$ROOT/bench/scripts/ingress-org.yaml" --data-dir "$W/pfdata" --log-level info >"$W/pfrouter.log" 2>&1 &
PF_PID=$!
PIDS+=("$PF_PID")
wait_port $PF_PORT pfrouter

# ---------------------------------------------------------------- (c) sink
log "starting smtpsink on 127.0.0.1:$SK_PORT"
"$W/bin/smtpsink" -addr "127.0.0.1:$SK_PORT" >"$W/smtpsink.log" 2>&1 &
SK_PID=$!
PIDS+=("$SK_PID")
wait_port $SK_PORT smtpsink

# ---------------------------------------------------------------- (d) load
have_perf=
if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_msync -- true >/dev/null 2>&1; then
	have_perf=1
fi

delivered_count() { grep -c "$1" "$2" 2>/dev/null || true; }

# run_load NAME PORT C: one smtpload run; records the CPU of NAME_pids and,
# for pfrouter, the msync/fsync/fdatasync calls its process made during the
# run (perf; badger syncs its mmap-ed logs with msync): ingress and the
# local deliveries running meanwhile.
run_load() {
	local name=$1 port=$2 c=$3
	local out="$W/results/$name-c$c.json" perfpid= t0 t1
	if [ "$name" = pfrouter ] && [ -n "$have_perf" ]; then
		perf stat -x, -e syscalls:sys_enter_msync,syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -p "$PF_PID" -o "$W/results/$name-c$c.perf" &
		perfpid=$!
		sleep 0.2
	fi
	# shellcheck disable=SC2046
	t0=$(cpu_ticks $("${name}_pids"))
	local w0
	w0=$(disk_writes $("${name}_pids"))
	"$W/bin/smtpload" -addr "127.0.0.1:$port" -c "$c" -n "$N" -duration "$DUR" -size "$SIZE" \
		-rcpt "$RCPT" -from "$FROM" -json >"$out" || { log "smtpload against $name failed"; cat "$out" >&2; }
	# shellcheck disable=SC2046
	t1=$(cpu_ticks $("${name}_pids"))
	echo "$(($(disk_writes $("${name}_pids")) - w0))" >"$W/results/$name-c$c.wbytes"
	if [ -n "$perfpid" ]; then
		kill -INT "$perfpid"
		wait "$perfpid" 2>/dev/null || true
	fi
	echo "$(((t1 - t0)))" >"$W/results/$name-c$c.cpu"
	log "$(jq -r '"\(.addr) c=\(.conns): \(.messages_ok) ok \(.messages_failed) failed, \(.msgs_per_s|floor) msgs/s, data p50 \(.data_latency.p50_ms) ms p99 \(.data_latency.p99_ms) ms"' "$out")"
}

# wait_drained: pfrouter's local deliveries catch up before the next run, so
# each run starts from an empty queue.
sent_pf=0
wait_drained() {
	local c=$1 t0 n
	sent_pf=$((sent_pf + $(jq .messages_ok "$W/results/pfrouter-c$c.json")))
	t0=$(now)
	for _ in $(seq 1200); do
		n=$(delivered_count 'msg=delivered' "$W/pfrouter.log")
		[ "$n" -ge "$sent_pf" ] && break
		sleep 0.1
	done
	echo "$n $(echo "$(now) - $t0" | bc)" >"$W/results/pfrouter-c$c.drain"
}

for c in $CONNS; do
	run_load postfix $PX_PORT "$c"
	run_load sink $SK_PORT "$c"
	run_load pfrouter $PF_PORT "$c"
	wait_drained "$c"
done
HELD=$(find "$P/queue/hold" -type f | wc -l)
log "Postfix hold queue: $HELD messages (durable, not delivered)"

# ---------------------------------------------------------------- (e) e2e
log "stopping the ingress servers; starting the demo organization for the end-to-end run"
kill "$PF_PID" "$SK_PID"
wait "$PF_PID" "$SK_PID" 2>/dev/null || true
PIDS=()
postfix -c "$P/etc" stop >/dev/null 2>&1 || true
POSTFIX_UP=
# The demo organization with every port 0 (its fixed ports may be in use):
# the banner gives ex1's bound SMTP address.
sed -E 's/127\.0\.0\.1:[0-9]+/127.0.0.1:0/g' "$ROOT/examples/contoso.yaml" >"$W/demo.yaml"
PROF_ARGS=()
[ -n "${E2E_PROFILE:-}" ] && PROF_ARGS=(--cpuprofile "$E2E_PROFILE")
"$W/bin/pfrouter" serve --config "$W/demo.yaml" --data-dir "$W/demo" --log-level info "${PROF_ARGS[@]}" >"$W/demo.log" 2>&1 &
DEMO_PID=$!
PIDS+=("$DEMO_PID")
EX1=
for _ in $(seq 100); do
	EX1=$(awk '$1 == "ex1" && $3 == "smtp" {print $4}' "$W/demo.log")
	[ -n "$EX1" ] && break
	sleep 0.1
done
[ -n "$EX1" ] || { log "demo organization did not start"; cat "$W/demo.log" >&2; exit 1; }
E0=$(now)
ET0=$(cpu_ticks "$DEMO_PID")
"$W/bin/smtpload" -addr "$EX1" -c "$E2E_C" -n "$E2E_N" -duration 120s -size "$SIZE" \
	-rcpt "$RCPT" -from "$FROM" -json >"$W/results/e2e-ingress.json"
E1=$(now)
OKE=$(jq .messages_ok "$W/results/e2e-ingress.json")
for _ in $(seq 1800); do
	n=$(delivered_count 'msg=delivered server=ex3' "$W/demo.log")
	[ "$n" -ge "$OKE" ] && break
	sleep 0.1
done
E2=$(now)
ET1=$(cpu_ticks "$DEMO_PID")
n=$(delivered_count 'msg=delivered server=ex3' "$W/demo.log")
jq -n --argjson sent "$OKE" --argjson delivered "$n" --argjson ingress_s "$(echo "$E1 - $E0" | bc)" \
	--argjson total_s "$(echo "$E2 - $E0" | bc)" --argjson conns "$E2E_C" \
	--argjson cpu_ms_per_msg "$(echo "scale=3; 1000 * ($ET1 - $ET0) / $HZ / ($n + ($n == 0))" | bc)" \
	'{sent:$sent, delivered:$delivered, conns:$conns, ingress_s:$ingress_s, total_s:$total_s, delivered_per_s:($delivered/$total_s), cpu_ms_per_msg:$cpu_ms_per_msg}' \
	>"$W/results/e2e.json"

# ---------------------------------------------------------------- (f) table
echo
echo "SMTP ingress, ${SIZE}-byte messages, up to $N messages or $DUR per run ($(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ))"
python3 - "$W/results" "$CONNS" "$HZ" <<'EOF'
import json, os, sys
d, conns, hz = sys.argv[1], [int(c) for c in sys.argv[2].split()], int(sys.argv[3])
def r(name, c):
    with open(os.path.join(d, f"{name}-c{c}.json")) as f:
        return json.load(f)
def cpu_ms(name, c, ok):
    try:
        with open(os.path.join(d, f"{name}-c{c}.cpu")) as f:
            t = int(f.read())
        return 1000.0 * t / hz / ok if ok else 0
    except (OSError, ValueError):
        return float("nan")
def fsyncs(c):
    try:
        n = 0
        for line in open(os.path.join(d, f"pfrouter-c{c}.perf")):
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[2].startswith("syscalls:"):
                n += int(parts[0])
        return n
    except (OSError, ValueError):
        return None
print(f"{'server':<9} {'conns':>5} {'msgs':>6} {'fail':>4} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'txn p99':>8} {'cpu ms/msg':>10}")
for c in conns:
    for name in ("pfrouter", "postfix", "sink"):
        x = r(name, c)
        print(f"{name:<9} {c:>5} {x['messages_ok']:>6} {x['messages_failed']:>4} {x['msgs_per_s']:>8.0f} "
              f"{x['data_latency']['p50_ms']:>8.2f} {x['data_latency']['p99_ms']:>8.2f} {x['txn_latency']['p99_ms']:>8.2f} "
              f"{cpu_ms(name, c, x['messages_ok']):>10.2f}")
print()
print("ratios (msgs/s)             " + "".join(f"{'c='+str(c):>10}" for c in conns))
print("pfrouter / Postfix          " + "".join(f"{r('pfrouter', c)['msgs_per_s'] / r('postfix', c)['msgs_per_s']:>10.2f}" for c in conns))
print("pfrouter / sink (ceiling)   " + "".join(f"{r('pfrouter', c)['msgs_per_s'] / r('sink', c)['msgs_per_s']:>10.2f}" for c in conns))
f = [fsyncs(c) for c in conns]
if all(v is not None for v in f):
    print("pfrouter syncs per message  " + "".join(f"{n / max(r('pfrouter', c)['messages_ok'], 1):>10.2f}" for c, n in zip(conns, f)))
drain = []
for c in conns:
    try:
        n, s = open(os.path.join(d, f"pfrouter-c{c}.drain")).read().split()
        drain.append(f"{float(s):>10.1f}")
    except (OSError, ValueError):
        drain.append(f"{'?':>10}")
print("pfrouter delivery lag (s)   " + "".join(drain))
def wkb(name, c):
    try:
        n = int(open(os.path.join(d, f"{name}-c{c}.wbytes")).read())
        return f"{n / 1024 / max(r(name, c)['messages_ok'], 1):>10.1f}"
    except (OSError, ValueError):
        return f"{'?':>10}"
print("pfrouter disk KB written/msg" + "".join(wkb("pfrouter", c) for c in conns))
print("Postfix disk KB written/msg " + "".join(wkb("postfix", c) for c in conns))
print("targets: >= 5x Postfix at c=64, >= 3x at c=1, >= 0.70 of the ceiling at c=64")
e = json.load(open(os.path.join(d, "e2e.json")))
print()
print(f"end to end, demo org, ex1 -> ex3 across tokyo-berlin: {e['sent']} posts at {e['conns']} connections; "
      f"ingress {e['ingress_s']:.1f} s, all {e['delivered']} delivered at ex3 after {e['total_s']:.1f} s "
      f"= {e['delivered_per_s']:.0f} msgs/s, {e['cpu_ms_per_msg']:.2f} ms CPU per message (every server)")
if e['conns'] in conns:
    single = r('pfrouter', e['conns'])
    print(f"end to end / single-server ingress at c={e['conns']}: {e['delivered_per_s'] / single['msgs_per_s']:.2f} "
          f"(goal >= 0.70); CPU per message {e['cpu_ms_per_msg']:.2f} vs {cpu_ms('pfrouter', e['conns'], single['messages_ok']):.2f} ms")
EOF

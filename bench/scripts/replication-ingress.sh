#!/usr/bin/env bash
# Ingress with public folder replication on vs off (issue 12), with each
# server in its own process (bench/README.md, "Replication on vs off in
# separate processes").
#
#   bench/scripts/replication-ingress.sh      # from anywhere; about 5-10 minutes
#
# bx1 receives the SMTP load (bench/smtpload, 10 KB posts to /Sales, whose
# replicas are bx1-pub and bx2-pub; bx2 is in another routing group behind
# a connector). "off": neither server has listen.replication, the posts
# stay in bx1-pub; "on": bx2 pulls every post from bx1 over TLS while the
# load runs. bx1, bx2 and the load generator are three processes
# (`pfrouter serve --server bx1|bx2`, the built binary), each run on fresh
# data directories. Every run is measured in every mode, off and on
# alternating (the order flips each round):
#   pinned    bx2 on CPU $RECV_CPU, bx1 and smtpload on $SEND_CPU (taskset), in
#             off and on runs alike: "on" then costs the sending server what a
#             receiver on another machine would (skipped with fewer than 2 CPUs).
#             By default bx2 goes on the CPU that takes the disk's interrupts
#             (/proc/interrupts): every write bx2 syncs interrupts that CPU,
#             and on the other one those interrupts were charged to bx1 and
#             the load generator (on a VM with one disk queue, all of them
#             land on one CPU), a cost a receiver on its own machine never
#             puts on the sender
#   unpinned  the scheduler places all three (bx2's work competes with bx1's)
# Per run it records msgs/s, the CPU each process used (/proc/<pid>/stat
# for the servers, from the first message until bx2 holds every post;
# getrusage of the load generator), and how long after the last 250 bx2
# held every post (its pfrouter_replication_changes_total{kind="add"}).
# It prints the runs, then per mode and session count the medians and the
# on/off ratios of msgs/s and of CPU per message.
#
# Knobs (environment):
#   N=20000        posts per run (a fresh process first touches its heap and
#                  badger's files: at 3,000 posts that start-up weighed on "on"
#                  and "off" unequally)          DUR=60s   time bound per run
#   SIZE=10240     bytes per post         CONNS="16 64"
#   ROUNDS=2       off+on pairs per mode and session count
#   MODES="pinned unpinned"               RECV_CPU= SEND_CPU= (default: above)
#   REPL_WAIT=120  seconds to wait for bx2 to hold every post
#   BASE=<git rev> also build that revision and run it beside this tree
#                  (base, then this tree, in every round): CPU before/after
#   PROFILE=1      after the measured runs, one pinned off and one on run per
#                  session count with `serve --cpuprofile` on each server
#                  (this tree only; not in the summary): bx1-off-c16.pprof,
#                  bx1-on-c16.pprof, bx2-on-c16.pprof... in the results
#                  (`go tool pprof -diff_base bx1-off-c16.pprof bx1-on-c16.pprof`:
#                  what replication adds to the sending server)
#   ORG_EXTRA='replication: {interval: 100ms}'  YAML added to the organization
#                  in both modes (e.g. a replication schedule)
#   KEEP=1 keeps the temp dir; OUT=dir copies the results (runs.jsonl,
#   summary.txt, profiles) there.
# Only 127.0.0.1, ports picked free at start; every process started is
# stopped on exit.
set -euo pipefail

N=${N:-20000}
DUR=${DUR:-60s}
SIZE=${SIZE:-10240}
CONNS=${CONNS:-"16 64"}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-"pinned unpinned"}
# disk_irq_cpu: the CPU that took most of the block devices' interrupts
# (virtio-blk request queues, NVMe, SCSI/ATA); nothing printed if none.
disk_irq_cpu() {
	awk 'NR == 1 {ncpu = NF; next}
		/virtio[0-9]+-req|nvme[0-9]+q|blkif|ahci|ata_piix|scsi|mpt|megasas/ {
			for (i = 2; i <= ncpu + 1; i++) n[i - 2] += $i
		}
		END {best = -1; for (c in n) if (n[c] > 0 && (best < 0 || n[c] > n[best])) best = c; if (best >= 0) print best}' /proc/interrupts 2>/dev/null
}
DISK_IRQ_CPU=$(disk_irq_cpu)
if [ -z "${RECV_CPU:-}" ]; then
	RECV_CPU=${DISK_IRQ_CPU:-0}
fi
if [ -z "${SEND_CPU:-}" ]; then
	SEND_CPU=$((RECV_CPU == 0 ? 1 : 0))
fi
REPL_WAIT=${REPL_WAIT:-120}
RCPT=sales@contoso.example
FROM=load@example.net
TOKEN=bench-admin-token-0123456789abcdef

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/pfrepl.XXXXXX)
PIDS=()

. "$(dirname "$0")/lib.sh"

trap cleanup_exit EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
mkdir -p "$W/results"

# ---------------------------------------------------------------- build
CODES=new
log "building pfrouter and smtpload into $W/new"
(cd "$ROOT" && go build -o "$W/new/" ./cmd/pfrouter ./bench/smtpload)
if [ -n "${BASE:-}" ]; then
	build_base "$BASE" "$W/base"
	cp "$W/new/smtpload" "$W/base/" # one load generator for both
	CODES="base new"
fi

if [ "$(nproc)" -lt 2 ]; then
	log "fewer than 2 CPUs: pinned mode skipped"
	MODES=${MODES//pinned/}
fi

read -r SMTP1 SMTP2 ADM1 ADM2 REP1 REP2 <<<"$(free_ports 6 | tr '\n' ' ')"

# config ON: the organization; ON=1 gives both servers listen.replication.
config() {
	local repl1= repl2=
	if [ "$1" = 1 ]; then
		repl1=", replication: \"127.0.0.1:$REP1\""
		repl2=", replication: \"127.0.0.1:$REP2\""
	fi
	cat <<EOF
organization: Bench
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123456789
admin: {token: $TOKEN}
routing_groups: [{name: rg-bench}, {name: rg-far}]
sites: [{name: bench}]
limits: {max_connections_per_ip: 1000}
${ORG_EXTRA:-}
connectors:
  - {name: far, between: [rg-bench, rg-far], cost: 10, bridgeheads: {rg-bench: [bx1], rg-far: [bx2]}}
servers:
  - name: bx1
    site: bench
    routing_group: rg-bench
    listen: {smtp: "127.0.0.1:$SMTP1", admin: "127.0.0.1:$ADM1"$repl1}
    stores:
      - {name: bx1-pub, kind: public, hierarchy: Public Folders, created: "2020-01-01T00:00:00Z"}
  - name: bx2
    site: bench
    routing_group: rg-far
    listen: {smtp: "127.0.0.1:$SMTP2", admin: "127.0.0.1:$ADM2"$repl2}
    stores:
      - {name: bx2-pub, kind: public, hierarchy: Public Folders, created: "2020-01-01T00:00:00Z"}
hierarchies: [{name: Public Folders, tlh: mapi}]
folders:
  - {path: /Sales, hierarchy: Public Folders, addresses: [sales@contoso.example], replicas: [bx1-pub, bx2-pub]}
EOF
}

# bx2_metric PATTERN: the sum of bx2's metric lines matching PATTERN (awk).
bx2_metric() {
	curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADM2/metrics" |
		awk -v pat="$1" '$0 ~ pat {n += $2} END {printf "%d\n", n}'
}
# replicated_adds: posts bx2 has taken from bx1.
replicated_adds() { bx2_metric '^pfrouter_replication_changes_total[{].*kind="add"'; }

onoff() { if [ "$1" = 1 ]; then echo on; else echo off; fi; }

delivered() { grep -c 'msg=delivered' "$1" 2>/dev/null || true; }

stop_servers() {
	stop_pids "$@"
	PIDS=()
}

# run_one MODE CODE C ON ROUND [PROFILE]: one measured run; appends a JSON
# line to runs.jsonl.
run_one() {
	local mode=$1 code=$2 c=$3 on=$4 round=$5 prof=${6:-}
	local tag="$mode-$code-c$c-on$on-r$round$prof" bin="$W/$code"
	local d="$W/runs/$tag" recv=() send=() pf1=() pf2=()
	mkdir -p "$d"
	config "$on" >"$d/org.yaml"
	if [ "$mode" = pinned ]; then
		recv=(taskset -c "$RECV_CPU")
		send=(taskset -c "$SEND_CPU")
	fi
	if [ -n "$prof" ]; then
		pf1=(--cpuprofile "$W/results/bx1-$(onoff "$on")-c$c.pprof")
		pf2=(--cpuprofile "$W/results/bx2-$(onoff "$on")-c$c.pprof")
	fi
	"${recv[@]}" "$bin/pfrouter" serve --config "$d/org.yaml" --server bx2 --data-dir "$d/data" "${pf2[@]}" >"$d/bx2.log" 2>&1 &
	local p2=$!
	PIDS+=("$p2")
	"${send[@]}" "$bin/pfrouter" serve --config "$d/org.yaml" --server bx1 --data-dir "$d/data" "${pf1[@]}" >"$d/bx1.log" 2>&1 &
	local p1=$!
	PIDS+=("$p1")
	wait_port "$SMTP1" bx1 && wait_port "$ADM2" bx2 || { cat "$d"/bx*.log >&2; exit 1; }
	if [ "$on" = 1 ]; then
		wait_port "$REP1" bx1-replication && wait_port "$REP2" bx2-replication || { cat "$d"/bx*.log >&2; exit 1; }
		sleep 1 # bx2's pull loop connects and long-polls
	fi
	local c1 c2 t0 t1 t2 ok lcpu n rs
	c1=$(cpu_ticks "$p1")
	c2=$(cpu_ticks "$p2")
	t0=$(now)
	(
		"${send[@]}" "$bin/smtpload" -addr "127.0.0.1:$SMTP1" -c "$c" -n "$N" -duration "$DUR" -size "$SIZE" \
			-rcpt "$RCPT" -from "$FROM" -json >"$d/load.json" || { log "smtpload failed"; cat "$d/load.json" >&2; }
		times >"$d/load.times"
	)
	t1=$(now)
	lcpu=$(children_cpu_s "$d/load.times")
	ok=$(jq .messages_ok "$d/load.json")
	for _ in $(seq 600); do
		[ "$(delivered "$d/bx1.log")" -ge "$ok" ] && break
		sleep 0.1
	done
	rs=null
	if [ "$on" = 1 ]; then
		local deadline
		deadline=$(echo "$(now) + $REPL_WAIT" | bc)
		while :; do
			n=$(replicated_adds)
			[ "$n" -ge "$ok" ] && break
			if [ "$(echo "$(now) > $deadline" | bc)" = 1 ]; then
				log "bx2 holds $n of $ok posts after ${REPL_WAIT}s"
				break
			fi
			sleep 0.05
		done
		t2=$(now)
		[ "$n" -ge "$ok" ] && rs=$(echo "$t2 - $t1" | bc)
	fi
	local e1 e2 batches=null
	e1=$(cpu_ticks "$p1")
	e2=$(cpu_ticks "$p2")
	[ "$on" = 1 ] && batches=$(bx2_metric '^pfrouter_replication_batches_total')
	stop_servers "$p1" "$p2"
	jq -c -n --arg mode "$mode" --arg code "$code" --argjson c "$c" --argjson on "$on" --argjson round "$round" \
		--argjson ok "$ok" --argjson rate "$(jq .msgs_per_s "$d/load.json")" \
		--argjson bx1 "$(echo "($e1 - $c1) / $HZ" | bc -l)" --argjson bx2 "$(echo "($e2 - $c2) / $HZ" | bc -l)" \
		--argjson load "$lcpu" --argjson repl "$rs" --argjson batches "$batches" --arg uptime "$(cut -d' ' -f1-3 /proc/loadavg)" \
		'{mode:$mode, code:$code, conns:$c, on:($on==1), round:$round, ok:$ok, msgs_per_s:$rate,
		  cpu_s:{bx1:$bx1, bx2:$bx2, load:$load}, replicated_s:$repl, batches:$batches, loadavg:$uptime}' >>"$W/results/runs.jsonl"
	log "$(tail -1 "$W/results/runs.jsonl")"
	[ -n "${KEEP:-}" ] || rm -rf "$d/data"
}

log "ports: bx1 smtp $SMTP1 admin $ADM1 repl $REP1; bx2 smtp $SMTP2 admin $ADM2 repl $REP2"
log "start: $(uptime)"
log "pinned mode: bx2 on CPU $RECV_CPU, bx1 and the load generator on CPU $SEND_CPU (disk interrupts: CPU ${DISK_IRQ_CPU:-unknown})"
for round in $(seq "$ROUNDS"); do
	for mode in $MODES; do
		for c in $CONNS; do
			for code in $CODES; do
				if [ $((round % 2)) = 1 ]; then order="0 1"; else order="1 0"; fi
				for on in $order; do
					run_one "$mode" "$code" "$c" "$on" "$round"
				done
			done
		done
	done
done
if [ "${PROFILE:-}" = 1 ]; then
	pmode=pinned
	case " $MODES " in *" pinned "*) ;; *) pmode=unpinned ;; esac
	for c in $CONNS; do
		run_one "$pmode" new "$c" 0 0 -profile
		run_one "$pmode" new "$c" 1 0 -profile
	done
fi
log "end: $(uptime)"

# ---------------------------------------------------------------- summary
{
	echo "Ingress with replication on vs off, bx1 and bx2 in separate processes: ${SIZE}-byte posts, $N per run,"
	echo "$(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ), load average at start/end in runs.jsonl (last: $(cut -d' ' -f1-3 /proc/loadavg))"
	echo "pinned: bx2 on CPU $RECV_CPU, bx1 and the load generator on CPU $SEND_CPU (the disk's interrupts: CPU ${DISK_IRQ_CPU:-unknown})"
	python3 - "$W/results/runs.jsonl" <<'EOF'
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def us(r, who):
    return 1e6 * r["cpu_s"][who] / max(r["ok"], 1)
print(f"{'mode':<9} {'code':<5} {'c':>3} {'rnd':>3} {'on':>3} {'msgs/s':>7} {'bx1 µs':>7} {'bx2 µs':>7} {'load µs':>7} {'repl s':>6} {'/batch':>6}  loadavg")
for r in runs:
    if r["round"] == 0:
        continue
    rs = "-" if r["replicated_s"] is None else f"{r['replicated_s']:.2f}"
    pb = f"{r['ok'] / r['batches']:.1f}" if r.get("batches") else "-"
    print(f"{r['mode']:<9} {r['code']:<5} {r['conns']:>3} {r['round']:>3} {('on' if r['on'] else 'off'):>3} {r['msgs_per_s']:>7.0f} "
          f"{us(r, 'bx1'):>7.0f} {us(r, 'bx2'):>7.0f} {us(r, 'load'):>7.0f} {rs:>6} {pb:>6}  {r['loadavg']}")
print()
print("medians over the rounds; on/off: median of each round's ratio")
print(f"{'mode':<9} {'code':<5} {'c':>3} {'off/s':>7} {'on/s':>7} {'on/off':>7} {'bx1 µs off->on':>15} {'bx1 cpu':>8} {'bx1 ctl':>8} {'bx2 µs on':>9} {'load µs off->on':>15} {'all µs off->on':>15} {'repl s':>6}")
keys = []
for r in runs:
    k = (r["mode"], r["code"], r["conns"])
    if r["round"] > 0 and k not in keys:
        keys.append(k)
for k in keys:
    rr = [r for r in runs if (r["mode"], r["code"], r["conns"]) == k and r["round"] > 0]
    off = {r["round"]: r for r in rr if not r["on"]}
    on = {r["round"]: r for r in rr if r["on"]}
    both = sorted(set(off) & set(on))
    if not both:
        continue
    med = lambda xs: st.median(xs) if xs else float("nan")
    ratio = med([on[i]["msgs_per_s"] / off[i]["msgs_per_s"] for i in both])
    cpu_ratio = med([us(off[i], "bx1") / us(on[i], "bx1") for i in both])
    # The same ratio with each run's bx1 CPU per post divided by the load
    # generator's (the control): a run where the CPU itself was slower
    # (another guest on the host, interrupts) counts for what bx1 did.
    ctl_ratio = med([(us(off[i], "bx1") / us(off[i], "load")) / (us(on[i], "bx1") / us(on[i], "load")) for i in both])
    tot = lambda r: us(r, "bx1") + us(r, "bx2") + us(r, "load")
    reps = [on[i]["replicated_s"] for i in both if on[i]["replicated_s"] is not None]
    print(f"{k[0]:<9} {k[1]:<5} {k[2]:>3} {med([off[i]['msgs_per_s'] for i in both]):>7.0f} {med([on[i]['msgs_per_s'] for i in both]):>7.0f} "
          f"{ratio:>7.2f} {med([us(off[i], 'bx1') for i in both]):>7.0f}->{med([us(on[i], 'bx1') for i in both]):<6.0f} {cpu_ratio:>8.2f} {ctl_ratio:>8.2f} "
          f"{med([us(on[i], 'bx2') for i in both]):>9.0f} {med([us(off[i], 'load') for i in both]):>7.0f}->{med([us(on[i], 'load') for i in both]):<6.0f} "
          f"{med([tot(off[i]) for i in both]):>7.0f}->{med([tot(on[i]) for i in both]):<6.0f} "
          f"{(max(reps) if reps else float('nan')):>6.2f}")
print("goal: on/off >= 0.80 (msgs/s); 'bx1 cpu' = bx1's CPU per post off / on; 'bx1 ctl' = the same, each run's")
print("divided by the load generator's CPU per post (the control); repl s: the slowest run's;")
print("load µs: the load generator's CPU per post, the same work off and on: where it rises, the CPU itself was slower (contention)")
EOF
} | tee "$W/results/summary.txt"

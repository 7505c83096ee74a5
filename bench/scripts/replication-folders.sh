#!/usr/bin/env bash
# What replicating many public folders costs when nothing happens and when
# one of them is busy (issue 12; bench/README.md, "Many folders, one busy").
# Two servers in one process (`pfrouter serve --config`), each folder
# replicated on both (i1-pub, i2-pub, one routing group each, a connector
# between). For each folder count it measures:
#   idle  the process's CPU over MEASURE seconds after WARM seconds, no mail
#   busy  POSTS 10 KB posts into one folder (/F00000) through i1's SMTP
#         (bench/smtpload, CONNS sessions), until i2 holds them all: msgs/s
#         and the CPU per post of both servers (ingress, store, replication)
#
#   bench/scripts/replication-folders.sh                  # about 3 minutes
#   COUNTS="1 5000" POSTS=5000 CONNS=16 WARM=15 MEASURE=20 BASE=<git rev> bench/scripts/replication-folders.sh
#
# BASE also builds that revision and measures it first, with the same
# load generator. Only 127.0.0.1; ports picked free at start.
set -euo pipefail

COUNTS=${COUNTS:-"1 5000"}
POSTS=${POSTS:-5000}
CONNS=${CONNS:-16}
WARM=${WARM:-15}
MEASURE=${MEASURE:-20}
TOKEN=bench-admin-token-0123456789abcdef
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/pffolders.XXXXXX)
PIDS=()

. "$(dirname "$0")/lib.sh"

trap cleanup_exit EXIT
trap 'exit 130' INT TERM

mkdir -p "$W/results"
log "building into $W"
(cd "$ROOT" && go build -o "$W/new/" ./cmd/pfrouter ./bench/smtpload)
CODES=new
if [ -n "${BASE:-}" ]; then
	build_base "$BASE" "$W/base"
	CODES="base new"
fi

read -r S1 A1 R1 S2 A2 R2 <<<"$(free_ports 6 | tr '\n' ' ')"

# org N: the organization with N folders on both servers.
org() {
	cat <<EOF2
organization: Folders
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123456789
admin: {token: $TOKEN}
routing_groups: [{name: rg1}, {name: rg2}]
sites: [{name: s}]
limits: {max_connections_per_ip: 1000}
connectors:
  - {name: c, between: [rg1, rg2], cost: 10, bridgeheads: {rg1: [i1], rg2: [i2]}}
servers:
  - {name: i1, site: s, routing_group: rg1, listen: {smtp: "127.0.0.1:$S1", admin: "127.0.0.1:$A1", replication: "127.0.0.1:$R1"},
     stores: [{name: i1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: i2, site: s, routing_group: rg2, listen: {smtp: "127.0.0.1:$S2", admin: "127.0.0.1:$A2", replication: "127.0.0.1:$R2"},
     stores: [{name: i2-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
EOF2
	for ((f = 0; f < $1; f++)); do
		printf '  - {path: /F%05d, hierarchy: PF, addresses: [f%05d@contoso.example], replicas: [i1-pub, i2-pub]}\n' "$f" "$f"
	done
}

# replicated: posts i2 has taken from i1.
replicated() {
	curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$A2/metrics" |
		awk '/^pfrouter_replication_changes_total[{].*kind="add"/ {n += $2} END {printf "%d\n", n}'
}

printf '%-5s %7s %8s %10s %8s %12s\n' code folders "idle ms" "idle %CPU" "msgs/s" "µs/post" >"$W/results/summary.txt"
for n in $COUNTS; do
	org "$n" >"$W/org-$n.yaml"
	for code in $CODES; do
		d="$W/$code-$n-data"
		"$W/$code/pfrouter" serve --config "$W/org-$n.yaml" --data-dir "$d" >"$W/$code-$n.log" 2>&1 &
		pid=$!
		PIDS=("$pid")
		wait_port "$S1" "i1 SMTP"
		wait_port "$A2" "i2 admin"
		sleep "$WARM"
		t0=$(cpu_ticks "$pid")
		sleep "$MEASURE"
		t1=$(cpu_ticks "$pid")
		start=$(date +%s.%N)
		"$W/new/smtpload" -addr "127.0.0.1:$S1" -c "$CONNS" -n "$POSTS" -size 10240 -rcpt f00000@contoso.example \
			-from load@example.net >"$W/$code-$n.load" 2>&1
		for ((i = 0; i < 600; i++)); do
			[ "$(replicated)" -ge "$POSTS" ] && break
			sleep 0.1
		done
		end=$(date +%s.%N)
		t2=$(cpu_ticks "$pid")
		got=$(replicated)
		stop_pids "$pid"
		PIDS=()
		[ "$got" -ge "$POSTS" ] || log "$code, $n folders: i2 holds $got of $POSTS posts"
		awk -v code="$code" -v n="$n" -v idle=$((t1 - t0)) -v busy=$((t2 - t1)) -v hz="$HZ" -v m="$MEASURE" -v posts="$POSTS" \
			-v secs="$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')" \
			'BEGIN {printf "%-5s %7d %8d %10.1f %8.0f %12.0f\n", code, n, idle * 1000 / hz, idle * 100 / hz / m, posts / secs, busy * 1e6 / hz / posts}' |
			tee -a "$W/results/summary.txt"
	done
done
echo
cat "$W/results/summary.txt"
echo "idle: CPU of both servers over $MEASURE s with no mail; busy: $POSTS posts into /F00000 until i2 holds them all"
echo "(msgs/s to the last one replicated), CPU per post of both servers"

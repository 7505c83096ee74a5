#!/usr/bin/env bash
# The CPU an idle organization spends on replication bookkeeping (issue 12):
# two servers (one process, `pfrouter serve --config`), FOLDERS public
# folders replicated on both, no mail; after WARM seconds it reports the
# process's CPU over MEASURE seconds (bench/README.md, "Idle cost of
# replicating many folders").
#
#   bench/scripts/replication-idle.sh            # about 40 s
#   FOLDERS=5000 WARM=15 MEASURE=20 BASE=<git rev> bench/scripts/replication-idle.sh
#
# BASE also builds that revision and measures it first. Only 127.0.0.1;
# ports picked free at start.
set -euo pipefail

FOLDERS=${FOLDERS:-5000}
WARM=${WARM:-15}
MEASURE=${MEASURE:-20}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/pfidle.XXXXXX)
PIDS=()

. "$(dirname "$0")/lib.sh"

cleanup() {
	local rc=$?
	set +e
	stop_pids "${PIDS[@]}"
	finish_workdir "$W"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building into $W"
(cd "$ROOT" && go build -o "$W/new/" ./cmd/pfrouter)
CODES=new
if [ -n "${BASE:-}" ]; then
	mkdir -p "$W/base-src"
	git -C "$ROOT" archive "$BASE" | tar -x -C "$W/base-src"
	(cd "$W/base-src" && go build -o "$W/base/" ./cmd/pfrouter)
	CODES="base new"
fi

read -r S1 A1 R1 S2 A2 R2 <<<"$(free_ports 6 | tr '\n' ' ')"
{
	cat <<EOF2
organization: Idle
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123456789
admin: {token: bench-admin-token-0123456789abcdef}
routing_groups: [{name: rg1}, {name: rg2}]
sites: [{name: s}]
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
	for ((f = 0; f < FOLDERS; f++)); do
		printf '  - {path: /F%05d, hierarchy: PF, replicas: [i1-pub, i2-pub]}\n' "$f"
	done
} >"$W/org.yaml"

for code in $CODES; do
	d="$W/$code-data"
	"$W/$code/pfrouter" serve --config "$W/org.yaml" --data-dir "$d" >"$W/$code.log" 2>&1 &
	pid=$!
	PIDS=("$pid")
	wait_port "$S2" "i2 SMTP"
	sleep "$WARM"
	t0=$(cpu_ticks "$pid")
	sleep "$MEASURE"
	t1=$(cpu_ticks "$pid")
	stop_pids "$pid"
	PIDS=()
	awk -v code="$code" -v f="$FOLDERS" -v t=$((t1 - t0)) -v hz="$HZ" -v m="$MEASURE" -v e="$(grep -c 'level=ERROR' "$W/$code.log" || true)" \
		'BEGIN {printf "%s: %d folders on 2 servers, idle: %d ms CPU in %d s (%.1f%% of a CPU); %d ERROR lines\n", code, f, t * 1000 / hz, m, t * 100 / hz / m, e}'
done

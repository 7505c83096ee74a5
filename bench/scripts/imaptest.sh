#!/usr/bin/env bash
# Dovecot's imaptest against pfrouter and Dovecot 2.3 on this machine, on
# loopback only (see bench/README.md, "imaptest").
#
#   IMAPTEST=/path/to/imaptest bench/scripts/imaptest.sh
#
# imaptest is not part of the repository: build it from its public source
# (github.com/dovecot/imaptest) against Debian's dovecot-dev 2.3 in a
# scratch directory, as bench/README.md describes. IMAPTEST_TESTS is its
# src/tests directory (default: next to the binary).
#
# It (a) starts a standalone Dovecot (lib.sh start_dovecot) and
# `pfrouter serve` on bench/scripts/imaptest-org.yaml (one server, ports
# 0, PlainTextLogin); (b) runs imaptest's scripted compliance tests
# (test=DIR) against each, printing the summary; (c) runs imaptest's
# default stress profile (CLIENTS clients, SECS seconds, the same
# generated mbox) against each, REPS times alternating, printing imaptest's
# totals line and the count of "Keyword used without being in FLAGS"
# errors. Every process it starts is stopped on exit.
#
# Knobs: CLIENTS (10), SECS (15), REPS (2), MSGS (mbox messages, 200),
# DV_PORT (1493), KEEP=1 keeps the temp dir.
set -euo pipefail

IMAPTEST=${IMAPTEST:?set IMAPTEST to the imaptest binary}
IMAPTEST_TESTS=${IMAPTEST_TESTS:-$(dirname "$IMAPTEST")/tests}
CLIENTS=${CLIENTS:-10}
SECS=${SECS:-15}
REPS=${REPS:-2}
MSGS=${MSGS:-200}
DV_PORT=${DV_PORT:-1493}
USER_NAME=alice
PASS=alice-pw

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /tmp/pfimaptest.XXXXXX)
chmod 755 "$W"
PIDS=()
export LD_LIBRARY_PATH=/usr/lib/dovecot${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

. "$(dirname "$0")/lib.sh"

cleanup() {
	local rc=$?
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [ "${KEEP:-}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free "$DV_PORT" || { log "port 127.0.0.1:$DV_PORT is in use; set DV_PORT"; exit 1; }
[ -d "$IMAPTEST_TESTS" ] || { log "no imaptest tests in $IMAPTEST_TESTS; set IMAPTEST_TESTS"; exit 1; }

log "building pfrouter into $W/bin"
mkdir -p "$W/bin"
(cd "$ROOT" && go build -o "$W/bin/" ./cmd/pfrouter)

start_dovecot "$W/dovecot" "$DV_PORT" "$USER_NAME" "$PASS" "ssl = no" "" pfbench-imaptest

"$W/bin/pfrouter" serve --config "$ROOT/bench/scripts/imaptest-org.yaml" --data-dir "$W/pfdata" --log-level warn >"$W/pfrouter.log" 2>&1 &
PIDS+=("$!")
PF=
for _ in $(seq 200); do
	PF=$(awk '$1 == "one" {for (i = 2; i < NF; i++) if ($i == "imap") print $(i + 1)}' "$W/pfrouter.log")
	[ -n "$PF" ] && break
	sleep 0.1
done
[ -n "$PF" ] || { log "pfrouter did not start"; cat "$W/pfrouter.log" >&2; exit 1; }
log "pfrouter imap $PF, Dovecot imap 127.0.0.1:$DV_PORT"

imaptest() { # addr, args...
	local addr=$1
	shift
	"$IMAPTEST" host="${addr%:*}" port="${addr##*:}" user="$USER_NAME" pass="$PASS" "$@"
}

# ---------------------------------------------------------------- compliance
for t in "dovecot 127.0.0.1:$DV_PORT" "pfrouter $PF"; do
	set -- $t
	log "compliance: imaptest test=$IMAPTEST_TESTS against $1"
	imaptest "$2" test="$IMAPTEST_TESTS" >"$W/compliance-$1.log" 2>&1 || true
	echo "compliance $1:"
	grep -E "test groups|individual commands" "$W/compliance-$1.log" | sed 's/^/  /'
done

# ---------------------------------------------------------------- stress
mbox=$W/stress.mbox
for i in $(seq "$MSGS"); do
	printf 'From user%d@example.org  Thu Feb 15 01:02:03 2007\nFrom: User %d <user%d@example.org>\nTo: %s@imaptest.example\nSubject: stress message %d\nDate: Thu, 15 Feb 2007 01:02:03 +0200\nMessage-ID: <stress%d@example.org>\n\n' \
		"$i" "$i" "$i" "$USER_NAME" "$i" "$i"
	for _ in $(seq $((i % 40 + 1))); do
		echo "Line of body text for message $i, padded to make sizes differ between messages."
	done
	echo
done >"$mbox"
for rep in $(seq "$REPS"); do
	for t in "dovecot 127.0.0.1:$DV_PORT" "pfrouter $PF"; do
		set -- $t
		log "stress $rep: imaptest clients=$CLIENTS secs=$SECS against $1"
		imaptest "$2" mbox="$mbox" clients="$CLIENTS" secs="$SECS" >"$W/stress-$1-$rep.log" 2>&1 || true
		echo "stress $rep $1: $(tail -1 "$W/stress-$1-$rep.log")"
		echo "  keyword errors: $(grep -c 'Keyword used without being in FLAGS' "$W/stress-$1-$rep.log" || true), errors: $(grep -c '^Error:' "$W/stress-$1-$rep.log" || true)"
	done
done
grep -h '^Logi' "$W"/stress-*.log | head -1 | sed 's/^/header: /'

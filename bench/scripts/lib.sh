# Shared helpers of the bench scripts (sourced, not run).

log() { printf '== %s\n' "$*" >&2; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port, what
	for _ in $(seq 100); do
		if ! port_free "$1"; then return 0; fi
		sleep 0.1
	done
	log "$2 did not listen on 127.0.0.1:$1"
	return 1
}

# cpu_ticks PID...: user+system CPU clock ticks of the processes and of
# their children already reaped (a master process that reaps its workers
# counts their time in its cutime/cstime).
cpu_ticks() {
	local t=0 p
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || continue
		t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13 + $14 + $15}')))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)

# disk_writes PID...: bytes the processes caused to be written to storage
# (/proc/PID/io write_bytes: page cache dirtied, mmap-ed logs included;
# a compaction's table writes count where they happen).
disk_writes() {
	local p n=0 v
	for p in "$@"; do
		v=$(awk '$1 == "write_bytes:" {print $2}' "/proc/$p/io" 2>/dev/null || echo 0)
		n=$((n + ${v:-0}))
	done
	echo "$n"
}

# start_dovecot DIR PORT USER PASS [SSL_CONF] [LOGIN_SERVICE] [INSTANCE]:
# a standalone Dovecot (installed with apt-get if missing) from a config
# under DIR, IMAP on 127.0.0.1:PORT, one passwd-file user on the dovecot
# uid with a Maildir. Sets DV_PID and appends it to PIDS.
start_dovecot() {
	local d=$1 port=$2 user=$3 pass=$4 ssl_conf=${5:-ssl = no} login_service=${6:-} instance=${7:-pfbench}
	if ! command -v dovecot >/dev/null; then
		log "installing dovecot-imapd (apt-get)"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dovecot-imapd >/dev/null
	fi
	local uid gid
	uid=$(id -u dovecot)
	gid=$(id -g dovecot)
	mkdir -p "$d/run" "$d/state" "$d/home/$user"
	printf '%s:{PLAIN}%s:%s:%s::%s\n' "$user" "$pass" "$uid" "$gid" "$d/home/$user" >"$d/passwd"
	chown -R dovecot:dovecot "$d/home"
	cat >"$d/dovecot.conf" <<EOF
protocols = imap
listen = 127.0.0.1
base_dir = $d/run
log_path = $d/dovecot.log
info_log_path = $d/dovecot.log
state_dir = $d/state
instance_name = $instance
$ssl_conf
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 100
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $d/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $d/passwd
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
  $login_service
}
EOF
	log "starting Dovecot $(dovecot --version | cut -d' ' -f1) on 127.0.0.1:$port (config $d/dovecot.conf)"
	dovecot -F -c "$d/dovecot.conf" >"$d/stdout.log" 2>&1 &
	DV_PID=$!
	PIDS+=("$DV_PID")
	wait_port "$port" Dovecot || { cat "$d/stdout.log" "$d/dovecot.log" >&2 2>/dev/null; return 1; }
}

# free_ports N: N distinct TCP ports of 127.0.0.1 that nothing listens on
# now (bound together on port 0, then released), one a line.
free_ports() {
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
    s.close()
PY
}

# children_cpu_s FILE: the children's user+system seconds from the output
# of bash's `times` written to FILE (its second line).
children_cpu_s() {
	sed -n 2p "$1" | awk '{
		t = 0
		for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
		printf "%.3f\n", t
	}'
}

# stop_pids PID...: SIGTERM each process, then reap those that are this
# shell's children (servers flush and write their profiles on SIGTERM).
stop_pids() {
	local p
	for p in "$@"; do kill "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# finish_workdir DIR: the end of a script's exit trap: copies DIR/results/*
# to $OUT when set, keeps DIR when KEEP=1, else removes it.
finish_workdir() {
	if [ -n "${OUT:-}" ]; then
		mkdir -p "$OUT" && cp -r "$1"/results/* "$OUT"/ 2>/dev/null
	fi
	if [ "${KEEP:-}" = 1 ]; then
		log "kept $1"
	else
		rm -rf "$1"
	fi
}

# cleanup_exit: the EXIT trap of a script that keeps the processes it
# started in PIDS and works in W: stops them, then finish_workdir W.
#   trap cleanup_exit EXIT; trap 'exit 130' INT TERM
cleanup_exit() {
	local rc=$?
	set +e
	stop_pids "${PIDS[@]}"
	finish_workdir "$W"
	exit $rc
}

# build_base REV DIR: builds pfrouter of git revision REV of this
# repository (ROOT) into DIR, for a script's before/after runs.
build_base() {
	log "building $1 ($(git -C "$ROOT" rev-parse --short "$1")) into $2"
	mkdir -p "$2-src"
	git -C "$ROOT" archive "$1" | tar -x -C "$2-src"
	(cd "$2-src" && go build -o "$2/" ./cmd/pfrouter)
}

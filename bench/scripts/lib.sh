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

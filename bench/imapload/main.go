// Command imapload generates IMAP load against a loopback server: logins
// per second (-mode login: each of -c connections repeats connect,
// optional STARTTLS, LOGIN, LOGOUT) or FETCH throughput over INBOX
// (-mode fetch-headers: FETCH 1:* (BODY.PEEK[HEADER]); -mode fetch-bodies:
// FETCH 1:* (BODY.PEEK[]), each of -c sessions repeating it). -n bounds
// the operations (logins, or FETCH commands of the whole mailbox) and
// -duration the time, whichever ends first. Two helper modes prepare a
// run: -mode append (APPEND -n messages of -size bytes) and -mode wait
// (poll until INBOX holds -expect messages). -json prints the result as
// JSON for scripts. The work is done by package bench/imapload/load;
// bench/scripts/imap.sh runs it against pfrouter and Dovecot.
//
//	go run ./bench/imapload -addr 127.0.0.1:1413 -user alice -pass alice-demo-pw -starttls \
//	    -mode login|fetch-headers|fetch-bodies -c 8 -n 2000 [-duration 30s] [-json]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"pfrouter/bench/imapload/load"
)

func main() {
	var cfg load.Config
	var mode string
	var asJSON bool
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:1413", "target host:port (loopback only)")
	flag.StringVar(&cfg.User, "user", "alice", "user name")
	flag.StringVar(&cfg.Pass, "pass", "alice-demo-pw", "password")
	flag.BoolVar(&cfg.StartTLS, "starttls", false, "STARTTLS before LOGIN (certificate not verified: loopback only)")
	flag.StringVar(&mode, "mode", "login", "login, fetch-headers, fetch-bodies, append or wait")
	flag.IntVar(&cfg.Conns, "c", 8, "concurrent sessions")
	flag.IntVar(&cfg.N, "n", 2000, "operations in all (0: until -duration)")
	flag.DurationVar(&cfg.Duration, "duration", 0, "stop starting operations after this long (0: no limit; wait: how long to wait, default 2m)")
	flag.DurationVar(&cfg.Timeout, "timeout", 0, "per-operation I/O deadline (default 60s)")
	flag.StringVar(&cfg.Mailbox, "mailbox", "INBOX", "mailbox to fetch from or append to")
	flag.IntVar(&cfg.Size, "size", 8192, "append: message size in bytes")
	flag.IntVar(&cfg.Expect, "expect", 0, "wait: messages the mailbox must hold")
	flag.BoolVar(&asJSON, "json", false, "print the result as JSON")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "imapload: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	cfg.Mode = load.Mode(mode)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imapload:", err)
		os.Exit(1)
	}
	if asJSON {
		res.WriteJSON(os.Stdout)
	} else {
		res.WriteText(os.Stdout)
	}
	if res.OK == 0 {
		os.Exit(1)
	}
}

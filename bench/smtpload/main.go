// Command smtpload generates SMTP load against a loopback server: -c
// sessions, each sending many messages (MAIL/RCPT/DATA/RSET), -n messages
// in all or for -duration, whichever ends first. It prints messages/s and
// latency percentiles (DATA to 250, and MAIL to 250) and failures by reply
// code; -json prints the same as JSON for scripts. The work is done by
// package bench/smtpload/load; bench/scripts/ingress.sh runs it against
// pfrouter, Postfix and bench/smtpsink.
//
//	go run ./bench/smtpload -addr 127.0.0.1:2515 -c 16 -n 5000 -size 10240 \
//	    -rcpt sales@contoso.example -from load@example.net [-duration 60s] [-starttls] [-json]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"pfrouter/bench/smtpload/load"
)

func main() {
	var cfg load.Config
	var rcpts string
	var asJSON, noRSET bool
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:2515", "target host:port (loopback only)")
	flag.IntVar(&cfg.Conns, "c", 16, "concurrent SMTP sessions")
	flag.IntVar(&cfg.Messages, "n", 5000, "messages to send in all (0: until -duration)")
	flag.DurationVar(&cfg.Duration, "duration", 0, "stop starting messages after this long (0: no limit)")
	flag.IntVar(&cfg.Size, "size", 10240, "message size in bytes, header included")
	flag.StringVar(&rcpts, "rcpt", "sales@contoso.example", "recipient(s), comma-separated")
	flag.StringVar(&cfg.From, "from", "load@example.net", "envelope sender")
	flag.BoolVar(&cfg.StartTLS, "starttls", false, "negotiate STARTTLS on each session (certificate not verified: loopback only)")
	flag.BoolVar(&noRSET, "no-rset", false, "do not send RSET after each message")
	flag.DurationVar(&cfg.Timeout, "timeout", 0, "per-command timeout (default 60s)")
	flag.BoolVar(&asJSON, "json", false, "print the result as JSON")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "smtpload: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	for _, r := range strings.Split(rcpts, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.Rcpts = append(cfg.Rcpts, r)
		}
	}
	cfg.RSET = !noRSET
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "smtpload:", err)
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

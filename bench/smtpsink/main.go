// Command smtpsink is an SMTP server on a loopback address that accepts
// every message, reads it and throws it away (package
// bench/smtpsink/sink): the ceiling of the SMTP protocol layer on this
// machine, against which bench/scripts/ingress.sh compares pfrouter.
//
//	go run ./bench/smtpsink -addr 127.0.0.1:2600 [-tls] [-read-all]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"pfrouter/bench/smtpload/load"
	"pfrouter/bench/smtpsink/sink"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2600", "listen address (loopback only)")
	var o sink.Options
	flag.BoolVar(&o.TLS, "tls", false, "offer STARTTLS with a self-signed certificate")
	flag.BoolVar(&o.ReadAll, "read-all", false, "read each message into memory (as pfrouter does) before discarding it")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := load.CheckLoopback(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "smtpsink:", err)
		os.Exit(2)
	}
	s, err := sink.New(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "smtpsink:", err)
		os.Exit(1)
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "smtpsink:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(sctx)
		s.Close()
	}()
	log.Info("smtpsink listening", "addr", l.Addr().String(), "tls", o.TLS)
	if err := s.Serve(l); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "smtpsink:", err)
		os.Exit(1)
	}
	log.Info("smtpsink stopped", "messages", s.Messages(), "bytes", s.Bytes())
}

// Package load is the core of the smtpload command: an SMTP load generator
// that keeps Conns sessions open and sends messages over each one in a
// MAIL/RCPT/DATA(/RSET) loop until Messages are sent or Duration passes,
// then reports messages per second, latency percentiles and failures by
// reply code. It only targets loopback addresses. bench/ingress_test.go and
// bench/scripts/ingress.sh drive pfrouter's smtpd, Postfix and the discard
// sink of package bench/smtpsink/sink with it.
package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config is one run.
type Config struct {
	Addr     string        // host:port, loopback only
	Conns    int           // concurrent sessions
	Messages int           // total messages to attempt (0: until Duration)
	Duration time.Duration // stop starting messages after this (0: no limit)
	Size     int           // message size in bytes (header and body)
	From     string
	Rcpts    []string
	StartTLS bool
	// RSET after every message, as the MAIL/RCPT/DATA/RSET loop
	// asks; off, the next MAIL follows the 250 directly.
	RSET    bool
	Timeout time.Duration // per command; default 60s
	Helo    string        // default "smtpload.invalid"
}

func (c *Config) check() error {
	if err := CheckLoopback(c.Addr); err != nil {
		return err
	}
	switch {
	case c.Conns < 1:
		return errors.New("need at least one connection")
	case c.Messages < 0 || c.Duration < 0:
		return errors.New("message count and duration must not be negative")
	case c.Messages == 0 && c.Duration == 0:
		return errors.New("bound the run by a message count, a duration or both")
	case len(c.Rcpts) == 0:
		return errors.New("need at least one recipient")
	case c.Size < 0:
		return errors.New("message size must not be negative")
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Minute
	}
	if c.Helo == "" {
		c.Helo = "smtpload.invalid"
	}
	return nil
}

// CheckLoopback refuses any target that is not on 127.0.0.0/8 or ::1
// ("localhost" is resolved and must resolve to loopback only): the tool
// generates load and must never be pointed at someone else's server.
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("target %q: want host:port: %w", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("target %q: bad port", addr)
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else if host == "localhost" {
		addrs, err := net.LookupIP(host)
		if err != nil {
			return fmt.Errorf("target %q: %w", addr, err)
		}
		ips = addrs
	} else {
		return fmt.Errorf("target %q refused: give a loopback IP address (127.0.0.0/8 or ::1)", addr)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("target %q refused: %s is not a loopback address (127.0.0.0/8 or ::1)", addr, ip)
		}
	}
	return nil
}

// Run performs one load run. Sessions are opened (and TLS negotiated)
// before the clock starts, so the rate is that of mail transactions on
// established sessions; a session that breaks is reopened on the clock.
// It returns an error only for a bad Config or when no session at all can
// be opened; message failures are counted in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var rb [4]byte
	rand.Read(rb[:])
	msg := newMessage(cfg.Size, cfg.From, cfg.Rcpts[0], hex.EncodeToString(rb[:]))

	workers := make([]*worker, cfg.Conns)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for i := range workers {
		w := &worker{id: i, cfg: &cfg, msg: msg, errors: map[string]int{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dial(cfg.Addr, cfg.Helo, cfg.StartTLS, cfg.Timeout)
			if err != nil {
				errOnce.Do(func() { firstErr = err })
				return
			}
			w.c = c
		}()
	}
	wg.Wait()
	opened := 0
	for _, w := range workers {
		if w.c != nil {
			opened++
		}
	}
	if opened == 0 {
		return nil, fmt.Errorf("cannot open any session to %s: %w", cfg.Addr, firstErr)
	}

	var claimed atomic.Int64
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	var timeBound atomic.Bool
	next := func() (int, bool) {
		if ctx.Err() != nil {
			return 0, false
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			timeBound.Store(true)
			return 0, false
		}
		n := int(claimed.Add(1))
		if cfg.Messages > 0 && n > cfg.Messages {
			return 0, false
		}
		return n, true
	}
	for _, w := range workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(next) }()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := &Result{Addr: cfg.Addr, Conns: cfg.Conns, Size: cfg.Size, StartTLS: cfg.StartTLS, Elapsed: elapsed.Seconds(),
		Errors: map[string]int{}, TimeBound: timeBound.Load()}
	var data, txn []time.Duration
	for _, w := range workers {
		res.OK += len(w.data)
		data = append(data, w.data...)
		txn = append(txn, w.txn...)
		for k, v := range w.errors {
			res.Errors[k] += v
			res.Failed += v
		}
	}
	if elapsed > 0 {
		res.Rate = float64(res.OK) / elapsed.Seconds()
		res.MBps = float64(res.OK) * float64(len(msg.body)+len(msg.header(0, 0))) / elapsed.Seconds() / 1e6
	}
	res.Data, res.Txn = latencyOf(data), latencyOf(txn)
	return res, nil
}

type worker struct {
	id     int
	cfg    *Config
	msg    *message
	c      *client
	data   []time.Duration
	txn    []time.Duration
	errors map[string]int
}

func (w *worker) run(next func() (int, bool)) {
	defer func() {
		if w.c != nil {
			w.c.quit()
		}
	}()
	for {
		seq, ok := next()
		if !ok {
			return
		}
		if w.c == nil {
			c, err := dial(w.cfg.Addr, w.cfg.Helo, w.cfg.StartTLS, w.cfg.Timeout)
			if err != nil {
				w.fail(err, "connect")
				time.Sleep(10 * time.Millisecond) // do not spin on a dead target
				continue
			}
			w.c = c
		}
		if err := w.send(seq); err != nil {
			w.fail(err, "io")
			continue
		}
		if w.cfg.RSET {
			if err := w.c.cmd("RSET", 250, "RSET"); err != nil {
				w.c.conn.Close()
				w.c = nil
			}
		}
	}
}

func (w *worker) send(seq int) error {
	c := w.c
	t0 := time.Now()
	if err := c.cmd("MAIL", 250, "MAIL FROM:<%s>", w.cfg.From); err != nil {
		return err
	}
	accepted := 0
	var rcptErr error
	for _, r := range w.cfg.Rcpts {
		if err := c.cmd("RCPT", 250, "RCPT TO:<%s>", r); err != nil {
			var re *ReplyError
			if !errors.As(err, &re) {
				return err
			}
			rcptErr = err
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return rcptErr
	}
	t1 := time.Now()
	if err := c.data(w.msg.header(w.id, seq), w.msg.body); err != nil {
		return err
	}
	t2 := time.Now()
	w.data = append(w.data, t2.Sub(t1))
	w.txn = append(w.txn, t2.Sub(t0))
	return nil
}

// fail counts a failed message by its reply code and keeps the session
// when the server answered (after RSET), drops it otherwise.
func (w *worker) fail(err error, kind string) {
	var re *ReplyError
	if errors.As(err, &re) {
		w.errors[strconv.Itoa(re.Reply.Code)]++
		if w.c != nil {
			if re.Reply.Code == 421 || w.c.cmd("RSET", 250, "RSET") != nil {
				w.c.conn.Close()
				w.c = nil
			}
		}
		return
	}
	w.errors[kind]++
	if w.c != nil {
		w.c.conn.Close()
		w.c = nil
	}
}

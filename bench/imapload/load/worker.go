package load

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// op is one session's repeated operation.
type op interface {
	do(ctx context.Context) (msgs, bytes int64, err error)
	broken() bool // after an error: stop this worker
	close()
}

func newWorker(ctx context.Context, cfg Config, rec *recorder) (op, error) {
	switch cfg.Mode {
	case ModeLogin:
		return &loginOp{cfg: cfg}, nil
	case ModeAppend:
		s, err := Dial(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return &appendOp{s: s, mailbox: cfg.Mailbox, msg: NewMessage(cfg.Size, cfg.User)}, nil
	}
	s, err := Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.Deadline()
	sel, err := s.Select(cfg.Mailbox, nil).Wait()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("SELECT %s at %s: %w", cfg.Mailbox, cfg.Addr, err)
	}
	if sel.NumMessages == 0 {
		s.Close()
		return nil, fmt.Errorf("%s at %s is empty: nothing to fetch (populate it first)", cfg.Mailbox, cfg.Addr)
	}
	rec.setMailboxSize(sel.NumMessages)
	return &fetchOp{s: s, bodies: cfg.Mode == ModeFetchBodies}, nil
}

// loginOp opens a fresh connection per operation.
type loginOp struct{ cfg Config }

func (o *loginOp) do(ctx context.Context) (int64, int64, error) {
	s, err := Dial(ctx, o.cfg)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	s.Deadline()
	if err := s.Logout().Wait(); err != nil {
		return 0, 0, fmt.Errorf("LOGOUT: %w", err)
	}
	return 0, 0, nil
}

func (o *loginOp) broken() bool { return false }
func (o *loginOp) close()       {}

// fetchOp fetches the whole selected mailbox per operation.
type fetchOp struct {
	s      *Session
	bodies bool
	failed bool
}

func (o *fetchOp) do(context.Context) (int64, int64, error) {
	o.s.Deadline()
	m, b, err := FetchAll(o.s.Client, o.bodies)
	o.failed = err != nil
	return m, b, err
}

func (o *fetchOp) broken() bool { return o.failed }
func (o *fetchOp) close()       { o.s.Deadline(); o.s.Logout().Wait(); o.s.Close() }

// FetchAll runs FETCH 1:* (BODY.PEEK[HEADER]), or (BODY.PEEK[]) when
// bodies, on the selected mailbox and streams the literals to io.Discard.
// It returns the messages seen and the literal bytes read.
func FetchAll(c *imapclient.Client, bodies bool) (msgs, n int64, err error) {
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	sec := &imap.FetchItemBodySection{Peek: true}
	if !bodies {
		sec.Specifier = imap.PartSpecifierHeader
	}
	cmd := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}})
	for {
		m := cmd.Next()
		if m == nil {
			break
		}
		msgs++
		for item := m.Next(); item != nil; item = m.Next() {
			if bs, ok := item.(imapclient.FetchItemDataBodySection); ok && bs.Literal != nil {
				k, err := io.Copy(io.Discard, bs.Literal)
				n += k
				if err != nil {
					cmd.Close()
					return msgs, n, fmt.Errorf("FETCH: reading message %d: %w", m.SeqNum, err)
				}
			}
		}
	}
	if err := cmd.Close(); err != nil {
		return msgs, n, fmt.Errorf("FETCH: %w", err)
	}
	return msgs, n, nil
}

// appendOp appends one message per operation.
type appendOp struct {
	s       *Session
	mailbox string
	msg     *Message
	seq     int
}

func (o *appendOp) do(context.Context) (int64, int64, error) {
	o.seq++
	b := o.msg.Build(o.seq)
	o.s.Deadline()
	cmd := o.s.Append(o.mailbox, int64(len(b)), nil)
	if _, err := cmd.Write(b); err != nil {
		cmd.Close()
		return 0, 0, fmt.Errorf("APPEND: %w", err)
	}
	if err := cmd.Close(); err != nil {
		return 0, 0, fmt.Errorf("APPEND: %w", err)
	}
	if _, err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("APPEND: %w", err)
	}
	return 1, int64(len(b)), nil
}

func (o *appendOp) broken() bool { return false }
func (o *appendOp) close()       { o.s.Deadline(); o.s.Logout().Wait(); o.s.Close() }

// wait polls SELECT until the mailbox holds cfg.Expect messages or
// cfg.Duration passes.
func wait(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var last uint32
	var lastErr error
	for {
		s, err := Dial(ctx, cfg)
		if err == nil {
			for {
				s.Deadline()
				sel, err := s.Select(cfg.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
				if err != nil {
					lastErr = err
					break
				}
				last = sel.NumMessages
				if int(last) >= cfg.Expect || time.Now().After(deadline) || ctx.Err() != nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			s.Close()
		} else {
			lastErr = err
		}
		if int(last) >= cfg.Expect {
			return &Result{Mode: string(cfg.Mode), Addr: cfg.Addr, Conns: 1, OK: 1, MailboxMessages: last,
				ElapsedS: time.Since(start).Seconds()}, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("%s at %s holds %d messages after %s, want %d (last error: %v)",
				cfg.Mailbox, cfg.Addr, last, cfg.Duration, cfg.Expect, lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package load

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"pfrouter/bench/smtpsink/sink"
)

func TestCheckLoopbackRefusesOtherTargets(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:25", "127.9.8.7:2525", "[::1]:25", "localhost:25"} {
		if err := CheckLoopback(ok); err != nil {
			t.Errorf("CheckLoopback(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1:25", "192.0.2.1:25", "[2001:db8::1]:25", "example.com:25", "0.0.0.0:25", "127.0.0.1", "127.0.0.1:99999"} {
		if err := CheckLoopback(bad); err == nil {
			t.Errorf("CheckLoopback(%q) = nil, want a refusal", bad)
		}
	}
	if _, err := Run(context.Background(), Config{Addr: "192.0.2.1:25", Conns: 1, Messages: 1, Rcpts: []string{"a@b"}}); err == nil {
		t.Fatal("Run accepted a non-loopback target")
	}
}

func startSink(t *testing.T, o sink.Options) (*sink.Server, string) {
	t.Helper()
	s, err := sink.New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return s, l.Addr().String()
}

func TestRunSendsCountBoundedMessagesOfSize(t *testing.T) {
	for _, tls := range []bool{false, true} {
		s, addr := startSink(t, sink.Options{TLS: tls})
		res, err := Run(context.Background(), Config{Addr: addr, Conns: 4, Messages: 50, Size: 10240, From: "a@example.net",
			Rcpts: []string{"b@example.net"}, StartTLS: tls, RSET: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK != 50 || res.Failed != 0 || s.Messages() != 50 {
			t.Fatalf("tls=%v: ok=%d failed=%d sink got %d, want 50/0/50 (errors %v)", tls, res.OK, res.Failed, s.Messages(), res.Errors)
		}
		// The sink sees the content without the final dot; sizes within
		// a few bytes of the asked size (message numbers vary in length).
		if avg := s.Bytes() / 50; avg < 10200 || avg > 10260 {
			t.Errorf("average message size %d, want about 10240", avg)
		}
		if res.Data.P50 <= 0 || res.Data.Max < res.Data.P99 || res.Txn.P50 < res.Data.P50 || res.Rate <= 0 {
			t.Errorf("implausible statistics: %+v", res)
		}
	}
}

func TestRunStopsOnDuration(t *testing.T) {
	_, addr := startSink(t, sink.Options{})
	start := time.Now()
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 2, Duration: 200 * time.Millisecond, Size: 1000,
		From: "a@example.net", Rcpts: []string{"b@example.net"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimeBound || res.OK == 0 {
		t.Fatalf("time_bound=%v ok=%d, want a time-bounded run that sent mail", res.TimeBound, res.OK)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("run took %s, want it to stop soon after 200ms", el)
	}
}

// rejecting refuses every other message at end of data with 451 and every
// recipient named refuse@ with 550.
type rejecting struct{ n atomic.Int64 }

type rejectSession struct{ b *rejecting }

func (r *rejecting) NewSession(*smtp.Conn) (smtp.Session, error) { return &rejectSession{r}, nil }
func (*rejectSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (*rejectSession) Reset()                                    {}
func (*rejectSession) Logout() error                             { return nil }
func (*rejectSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "refuse@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return nil
}
func (s *rejectSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	if s.b.n.Add(1)%2 == 0 {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}
	return nil
}

func TestRunCountsFailuresByReplyCode(t *testing.T) {
	srv := smtp.NewServer(&rejecting{})
	srv.Domain = "reject.invalid"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	res, err := Run(context.Background(), Config{Addr: l.Addr().String(), Conns: 2, Messages: 40, Size: 500,
		From: "a@example.net", Rcpts: []string{"b@example.net"}, RSET: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 20 || res.Errors["451"] != 20 || res.Failed != 20 {
		t.Fatalf("ok=%d errors=%v, want 20 ok and 20 failed with 451", res.OK, res.Errors)
	}
	res, err = Run(context.Background(), Config{Addr: l.Addr().String(), Conns: 1, Messages: 5, Size: 500,
		From: "a@example.net", Rcpts: []string{"refuse@example.net"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 0 || res.Errors["550"] != 5 {
		t.Fatalf("ok=%d errors=%v, want 5 failed with 550 at RCPT", res.OK, res.Errors)
	}
}

func TestRunFailsWhenNoSessionOpens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Run(context.Background(), Config{Addr: addr, Conns: 2, Messages: 5, From: "a@b", Rcpts: []string{"c@d"}})
	var op *net.OpError
	if err == nil || !errors.As(err, &op) {
		t.Fatalf("Run against a closed port: %v, want a connection error", err)
	}
}

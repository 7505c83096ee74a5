package pop3d

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// FuzzSession feeds arbitrary bytes to a session over net.Pipe and checks
// that it neither panics nor hangs: once the client side closes, the
// session must end promptly and release the maildrop.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"USER alice\r\nPASS secret pw\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nRSET\r\nQUIT\r\n",
		"AUTH PLAIN\r\n" + plainIR("", "alice", "secret pw") + "\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n",
		"AUTH PLAIN\r\n*\r\nCAPA\r\nSTLS\r\n\x16\x03\x01garbage",
		"USER alice\nPASS secret pw\nTOP 1 0\nLIST 99999999999\nDELE 0\nNOOP\n",
		"\x00\xff\r\n\r\n.\r\nAUTH\r\nAUTH PLAIN =\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	srvCfg, _, _ := selfSigned(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		md := newMaildrop(msg1, msg2)
		srv, err := New(Options{
			Hostname:    "fuzz",
			Auth:        &fakeAuth{md: md},
			TLSConfig:   srvCfg,
			Logger:      slog.New(slog.DiscardHandler),
			IdleTimeout: 2 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		cli, srvSide := net.Pipe()
		done := make(chan struct{})
		go func() {
			srv.ServeConn(srvSide)
			close(done)
		}()
		go io.Copy(io.Discard, cli)
		_ = cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
		cli.Write(data)
		cli.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("session did not end after the client closed; input %q", data)
		}
		srv.Close()
		if md.closeCount() > 1 {
			t.Fatalf("maildrop closed %d times", md.closeCount())
		}
	})
}

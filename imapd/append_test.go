package imapd

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"pfrouter/store"
)

// messages counts the messages in alice's mailbox through a new session.
func (e *env) messages(mailbox string) uint32 {
	e.t.Helper()
	c := e.login("alice", nil)
	st, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		e.t.Fatalf("STATUS %s: %v", mailbox, err)
	}
	c.Logout()
	return *st.NumMessages
}

// A literal cut off by a closed connection stores nothing, neither in
// memory (small) nor spooled to disk (large).
func TestAppendCutOffStoresNothing(t *testing.T) {
	for _, size := range []int{100, spoolThreshold + 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			spool := t.TempDir()
			e := newEnvWith(t, Options{SpoolDir: spool})
			r := e.rawLogin("alice")
			r.send(fmt.Sprintf("A1 APPEND INBOX {%d}\r\n", size))
			if l := r.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("want a continuation, got %q", l)
			}
			r.send("Subject: cut\r\n") // 14 bytes
			r.c.Close()
			// The server logs the failed APPEND once it has given up on it.
			eventually(t, 30*time.Second, "the failed APPEND in the log", func() bool {
				return strings.Contains(e.logs.String(), "handling APPEND command")
			})
			if n := e.messages("INBOX"); n != 0 {
				t.Fatalf("INBOX holds %d messages after a cut-off APPEND, want 0", n)
			}
			if left, _ := os.ReadDir(spool); len(left) != 0 {
				t.Fatalf("spool directory keeps %d files", len(left))
			}
		})
	}
}

// APPEND over the limit is refused with NO [TOOBIG] before the client
// sends the literal: the configured maximum, and a public folder's own
// smaller max_message_size.
func TestAppendTooBigRefusedEarly(t *testing.T) {
	e := newEnvWith(t, Options{MaxAppendSize: 4096})
	r := e.rawLogin("alice")
	for _, c := range []struct{ mailbox, size string }{{"INBOX", "4097"}, {`"Public Folders/Small"`, "2000"}} {
		got := r.cmd("A1 APPEND " + c.mailbox + " {" + c.size + "}")
		if len(got) != 1 || !strings.HasPrefix(got[0], "A1 NO [TOOBIG]") {
			t.Fatalf("APPEND %s {%s}: got %q, want only a tagged NO [TOOBIG]", c.mailbox, c.size, got)
		}
	}
	// Within the limit it works.
	msg := "Subject: small\r\n\r\nhello\r\n"
	r.send(fmt.Sprintf("A2 APPEND \"Public Folders/Small\" {%d}\r\n", len(msg)))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("want a continuation, got %q", l)
	}
	r.send(msg + "\r\n")
	if got := tagged(r.until("A2")); !strings.HasPrefix(got, "A2 OK") {
		t.Fatalf("small APPEND: %q", got)
	}
	// A non-synchronizing literal over the limit is already on its way:
	// the server refuses it and closes instead of reading it as commands.
	r.send("A3 APPEND INBOX {5000+}\r\n" + strings.Repeat("A4 NOOP\r\n", 500))
	if got := r.line(); !strings.HasPrefix(got, "A3 NO [TOOBIG]") {
		t.Fatalf("LITERAL+ over the limit: %q", got)
	}
	for l := r.line(); l != ""; l = r.line() {
		if strings.HasPrefix(l, "A4") {
			t.Fatalf("literal bytes were run as a command: %q", l)
		}
	}
}

// patternReader yields n bytes of a message without holding them.
type patternReader struct{ left int }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := min(len(b), p.left)
	for i := range b[:n] {
		b[i] = "abcdefghijklmnopqrstuvwxyz\r\n"[(p.left-i)%28]
	}
	p.left -= n
	return n, nil
}

// Concurrent large APPENDs are spooled and streamed: the heap does not
// grow by their total size (issue 14: ten 100 MiB APPENDs took 3 GB).
func TestAppendLargeBoundedMemory(t *testing.T) {
	const clients, size = 4, 16 << 20
	// Bodies in the store's value log (limits.store_bodies: value_log):
	// an inline store passes 64 MiB of bodies through badger's memtable
	// arenas on the Go heap (fixed-size, ~16 MiB each, several alive while
	// they flush), which would be measured here as if imapd held the
	// literals. What this test guards is imapd's spooling.
	e := newEnvWithStore(t, Options{MaxAppendSize: 64 << 20, SpoolDir: t.TempDir()}, store.Options{BodiesInValueLog: true})
	conns := make([]*rawConn, clients)
	for i := range conns {
		conns[i] = e.rawLogin("alice")
	}
	// Collect often so HeapAlloc tracks live data, not garbage awaiting
	// the next cycle.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, r := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tag := fmt.Sprintf("B%d", i)
			r.send(fmt.Sprintf("%s APPEND INBOX {%d}\r\n", tag, size))
			if l := r.line(); !strings.HasPrefix(l, "+") {
				errs <- fmt.Errorf("%s: want a continuation, got %q", tag, l)
				return
			}
			r.c.SetWriteDeadline(time.Now().Add(2 * time.Minute))
			if _, err := io.Copy(r.c, &patternReader{left: size}); err != nil {
				errs <- err
				return
			}
			r.send("\r\n")
			for {
				l := r.line()
				if l == "" || strings.HasPrefix(l, tag+" ") {
					if !strings.HasPrefix(l, tag+" OK") {
						errs <- fmt.Errorf("%s: %q", tag, l)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	grew := int64(peak.Load()) - int64(base.HeapAlloc)
	t.Logf("heap grew by %d MiB for %d concurrent APPENDs of %d MiB", grew>>20, clients, size>>20)
	if grew > clients*size/2 {
		t.Fatalf("heap grew by %d MiB, over half the %d MiB being appended: literals are held in memory", grew>>20, clients*size>>20)
	}
	c := e.login("alice", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, c, imap.SeqSetNum(1, 2, 3, 4), &imap.FetchOptions{RFC822Size: true})
	if len(msgs) != clients {
		t.Fatalf("%d messages stored, want %d", len(msgs), clients)
	}
	for _, m := range msgs {
		if m.RFC822Size != size {
			t.Fatalf("message %d has %d bytes, want %d", m.SeqNum, m.RFC822Size, size)
		}
	}
}

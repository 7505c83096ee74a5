package gossip

import (
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Issue 10 item 5: the gossip port must not buffer megabytes from an
// unauthenticated stream. 40 streams each announcing a 20 MB encrypted
// push/pull state (memberlist's limit) and sending 2 MB of it, plus 40
// streams that send nothing, leave the heap within a small bound, and the
// node still gossips with a real member afterwards.
func TestJunkStreamsBounded(t *testing.T) {
	a := start(t, fastOpts(t, "ex1"))
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	const streams, perStream = 40, 2 << 20
	junk := make([]byte, 64<<10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	for i := 0; i < streams; i++ {
		idle, err := net.Dial("tcp", a.Addr())
		if err == nil {
			mu.Lock()
			conns = append(conns, idle)
			mu.Unlock()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", a.Addr())
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			hdr := []byte{10, 0, 0, 0, 0} // encryptMsg, then the length
			binary.BigEndian.PutUint32(hdr[1:], 20<<20)
			if _, err := c.Write(hdr); err != nil {
				return
			}
			for sent := 0; sent < perStream; sent += len(junk) {
				if _, err := c.Write(junk); err != nil {
					return // refused: what we want
				}
			}
		}()
	}
	wg.Wait()
	during := heap()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	grew := int64(during) - int64(before)
	t.Logf("heap growth with %d junk and %d idle streams: %d KB", streams, streams, grew>>10)
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MB while %d unauthenticated streams sent %d MB", grew>>20, streams, streams*perStream>>20)
	}
	// The node still works for a real member.
	b := start(t, fastOpts(t, "ex2", a.Seed()))
	eventually(t, 30*time.Second, "ex2 to join ex1 over verified streams", func() bool {
		return len(a.Members()) == 2 && len(b.Members()) == 2
	})
}

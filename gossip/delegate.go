package gossip

import (
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"sort"
	"strings"

	"github.com/hashicorp/memberlist"
)

// msgRecord tags a broadcast carrying one Record; the tag leaves room for
// other message types without breaking older servers.
const msgRecord byte = 'r'

// delegate is the memberlist.Delegate side of a Node.
type delegate Node

func (d *delegate) NodeMeta(limit int) []byte { return nil }

// NotifyMsg receives a broadcast from a peer. A record that wins here is
// broadcast on (epidemic), so it spreads even if its origin fails now.
func (d *delegate) NotifyMsg(b []byte) {
	n := (*Node)(d)
	if len(b) < 2 || b[0] != msgRecord {
		return
	}
	var r Record
	if err := json.Unmarshal(b[1:], &r); err != nil {
		n.log.Warn("gossip: undecodable record dropped", "err", err)
		return
	}
	if n.merge(r) {
		n.broadcast(r)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.bq.GetBroadcasts(overhead, limit)
}

// LocalState is our half of push/pull anti-entropy: every winning record.
func (d *delegate) LocalState(join bool) []byte {
	b, err := json.Marshal((*Node)(d).Records())
	if err != nil {
		return nil
	}
	return b
}

// MergeRemoteState merges a peer's records, oldest first so dependent
// records (a replica of an added store) apply after what they depend on.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	n := (*Node)(d)
	var recs []Record
	if err := json.Unmarshal(buf, &recs); err != nil {
		n.log.Warn("gossip: undecodable remote state dropped", "err", err)
		return
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Version < recs[j].Version })
	for _, r := range recs {
		n.merge(r)
	}
}

func (n *Node) broadcast(r Record) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	n.bq.QueueBroadcast(&recordBroadcast{id: r.id(), msg: append([]byte{msgRecord}, b...)})
}

// recordBroadcast is a queued record; a newer one for the same (Kind, Key)
// replaces it in the queue.
type recordBroadcast struct {
	id  recKey
	msg []byte
}

func (b *recordBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*recordBroadcast)
	return ok && ob.id == b.id
}
func (b *recordBroadcast) Message() []byte { return b.msg }
func (b *recordBroadcast) Finished()       {}

// events tracks membership for Members and OnMemberChange.
type events Node

func (e *events) NotifyJoin(m *memberlist.Node)   { (*Node)(e).member(m, true) }
func (e *events) NotifyLeave(m *memberlist.Node)  { (*Node)(e).member(m, false) }
func (e *events) NotifyUpdate(m *memberlist.Node) { (*Node)(e).member(m, true) }

func (n *Node) member(m *memberlist.Node, alive bool) {
	if m.Name == n.o.Name {
		return
	}
	n.mu.Lock()
	prev, known := n.members[m.Name]
	n.members[m.Name] = Member{Name: m.Name, Addr: m.Address(), Alive: alive}
	n.mu.Unlock()
	if known && prev.Alive == alive {
		return
	}
	n.log.Info("gossip: member change", "member", m.Name, "addr", m.Address(), "alive", alive)
	if n.o.OnMemberChange != nil {
		n.o.OnMemberChange(m.Name, alive)
	}
}

// stdLogger routes memberlist's log.Logger lines to slog at their level.
type stdLogger struct{ l *slog.Logger }

func newStdLogger(l *slog.Logger) *log.Logger { return log.New(stdLogger{l}, "", 0) }

func (w stdLogger) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	lvl := slog.LevelDebug
	switch {
	case strings.Contains(s, "use of closed network connection"):
		// memberlist's gossip and probe timers can fire between Leave and
		// Shutdown's closing of the transport: expected at every stop, not
		// an error an operator should see.
	case strings.Contains(s, "[ERR]"):
		lvl = slog.LevelError
	case strings.Contains(s, "[WARN]"):
		lvl = slog.LevelWarn
	case strings.Contains(s, "[INFO]"):
		lvl = slog.LevelInfo
	}
	w.l.Log(context.Background(), lvl, s)
	return len(p), nil
}

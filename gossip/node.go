package gossip

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"pfrouter/servercred"
)

// Options configure a gossip node. Zero durations take production defaults.
type Options struct {
	Name string // this server's name (unique in the organization)
	Bind string // host:port of listen.gossip; port 0 picks a free port (see Node.Addr)
	// Seeds are other servers' gossip addresses, as "name/host:port" so the
	// TLS stream to a seed verifies that server (a bare host:port is
	// refused when dialing streams).
	Seeds  []string
	Secret string // organization secret: SHA-256 of it is the AES-256 key of packets (UDP)
	// Identity is this server's organization certificate: every stream
	// (TCP) between members is TLS verifying both sides (servercred).
	// Required.
	Identity *servercred.Identity
	Dir      string  // data directory for persisted records; "" keeps nothing
	Applier  Applier // applies winning records; nil applies nothing
	Logger   *slog.Logger
	// OnMemberChange reports another server joining (alive) or failing or
	// leaving (not alive); a dead server is unreachable in link state (R10).
	// Called synchronously from memberlist: keep it quick.
	OnMemberChange func(server string, alive bool)

	PushPullInterval time.Duration // anti-entropy full-state exchange; default 10s
	ProbeInterval    time.Duration // failure detection probe; default 1s
	JoinRetry        time.Duration // while alone, retry the seeds this often; default 2s
}

// Node is a running gossip member.
type Node struct {
	o     Options
	log   *slog.Logger
	ml    *memberlist.Memberlist
	bq    *memberlist.TransmitLimitedQueue
	addr  string
	stop  chan struct{}
	wg    sync.WaitGroup
	close sync.Once

	// mergeMu serialises merges: Apply, persistence and broadcast happen in
	// one order per node. mu guards the maps for readers.
	mergeMu sync.Mutex
	mu      sync.RWMutex
	recs    map[recKey]Record
	pending map[recKey]Record // won but Apply failed; retried after later applies
	clock   uint64
	members map[string]Member
}

// Key derives the 32-byte AES key memberlist encrypts with from the
// organization secret.
func Key(secret string) []byte {
	k := sha256.Sum256([]byte(secret))
	return k[:]
}

// Start loads persisted records, re-applies them, binds the gossip
// listener and joins the seeds (retrying in the background while alone).
// The node runs until Close or until ctx is done.
func Start(ctx context.Context, o Options) (*Node, error) {
	if o.Name == "" {
		return nil, errors.New("gossip: server name is required")
	}
	if o.Secret == "" {
		return nil, errors.New("gossip: organization secret is required (it keys the cluster encryption)")
	}
	if o.Identity == nil {
		return nil, errors.New("gossip: server identity is required (streams between servers are TLS)")
	}
	host, portStr, err := net.SplitHostPort(o.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip: listen.gossip %q: %w", o.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("gossip: listen.gossip %q: bad port", o.Bind)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PushPullInterval <= 0 {
		o.PushPullInterval = 10 * time.Second
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = time.Second
	}
	if o.JoinRetry <= 0 {
		o.JoinRetry = 2 * time.Second
	}
	n := &Node{
		o:       o,
		log:     o.Logger.With("component", "gossip"),
		stop:    make(chan struct{}),
		recs:    map[recKey]Record{},
		pending: map[recKey]Record{},
		members: map[string]Member{},
	}
	st, err := load(o.Dir)
	if err != nil {
		return nil, err
	}
	n.reapply(st)

	cfg := memberlist.DefaultLANConfig()
	cfg.Name = o.Name
	cfg.BindAddr, cfg.BindPort = host, port
	cfg.AdvertiseAddr, cfg.AdvertisePort = "", port
	cfg.SecretKey = Key(o.Secret)
	cfg.GossipVerifyIncoming, cfg.GossipVerifyOutgoing = true, true
	cfg.PushPullInterval = o.PushPullInterval
	cfg.ProbeInterval = o.ProbeInterval
	cfg.ProbeTimeout = o.ProbeInterval / 2
	cfg.GossipInterval = 100 * time.Millisecond
	cfg.TCPTimeout = 2 * time.Second
	cfg.SuspicionMult = 3
	// A server restarted on another port may take its name back once the
	// old incarnation is known dead.
	cfg.DeadNodeReclaimTime = 5 * o.ProbeInterval
	cfg.Logger = newStdLogger(n.log)
	cfg.Delegate = (*delegate)(n)
	cfg.Events = (*events)(n)
	nt, err := listenTransport(host, port, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("gossip: listen on %s: %w", o.Bind, err)
	}
	if port == 0 {
		cfg.BindPort = nt.GetAutoBindPort()
		cfg.AdvertisePort = cfg.BindPort
	}
	tt := newTLSTransport(nt, o.Identity, n.memberAt)
	cfg.Transport = tt
	ml, err := memberlist.Create(cfg)
	if err != nil {
		tt.Shutdown()
		return nil, fmt.Errorf("gossip: listen on %s: %w", o.Bind, err)
	}
	n.ml = ml
	n.bq = &memberlist.TransmitLimitedQueue{NumNodes: ml.NumMembers, RetransmitMult: 3}
	local := ml.LocalNode()
	n.addr = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	n.mu.Lock()
	n.members[o.Name] = Member{Name: o.Name, Addr: n.addr, Alive: true}
	n.mu.Unlock()

	if len(o.Seeds) > 0 {
		if _, err := n.Join(); err != nil {
			n.log.Info("gossip: no seed answered yet; retrying in the background", "err", err)
		}
	}
	n.wg.Add(1)
	go n.loop(ctx)
	n.log.Info("gossip: started", "addr", n.addr, "records", len(st.Records))
	return n, nil
}

// reapply restores persisted records and applies them in version order, so
// a store comes before a replica that names it.
func (n *Node) reapply(st persisted) {
	sort.Slice(st.Records, func(i, j int) bool { return st.Records[i].Version < st.Records[j].Version })
	n.mergeMu.Lock()
	defer n.mergeMu.Unlock()
	n.clock = st.Clock
	for _, r := range st.Records {
		if !r.valid() {
			continue
		}
		n.recs[r.id()] = r
		n.clock = max(n.clock, r.Version)
		n.apply(r)
	}
}

// Addr is the address the node actually listens on (host:port).
func (n *Node) Addr() string { return n.addr }

// Join contacts the seeds; it returns how many answered. A seed that
// cannot decrypt our traffic (another secret) does not count.
func (n *Node) Join() (int, error) {
	var seeds []string
	for _, s := range n.o.Seeds {
		if s != "" && s != n.addr {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return 0, nil
	}
	c, err := n.ml.Join(seeds)
	if c > 0 {
		return c, nil
	}
	return 0, fmt.Errorf("gossip: join %v: %w", seeds, err)
}

// loop retries the seeds while this node is alone, so servers started in
// any order find each other, and closes the node when ctx ends.
func (n *Node) loop(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.o.JoinRetry)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-ctx.Done():
			go n.Close()
			return
		case <-t.C:
			if len(n.o.Seeds) > 0 && n.ml.NumMembers() <= 1 {
				if _, err := n.Join(); err != nil {
					n.log.Debug("gossip: join retry failed", "err", err)
				}
			}
		}
	}
}

// Publish makes a change here and sends it to the cluster: it bumps the
// Lamport clock, applies the record locally (an Apply error refuses the
// change and nothing is sent), persists it and broadcasts it.
func (n *Node) Publish(kind, key string, value any) (Record, error) {
	raw, err := json.Marshal(value)
	if err != nil {
		return Record{}, fmt.Errorf("gossip: encode %s %q: %w", kind, key, err)
	}
	n.mergeMu.Lock()
	defer n.mergeMu.Unlock()
	n.mu.RLock()
	r := Record{Kind: kind, Key: key, Origin: n.o.Name, Version: n.clock + 1, At: time.Now().UTC(), Value: raw}
	n.mu.RUnlock()
	if !r.valid() {
		return Record{}, fmt.Errorf("gossip: record kind %q key %q is not valid", kind, key)
	}
	if n.o.Applier != nil {
		if err := n.o.Applier.Apply(r); err != nil {
			return Record{}, fmt.Errorf("gossip: apply %s %q: %w", kind, key, err)
		}
	}
	n.mu.Lock()
	n.clock = r.Version
	n.recs[r.id()] = r
	delete(n.pending, r.id())
	n.mu.Unlock()
	n.persistLocked()
	n.retryPending()
	n.broadcast(r)
	return r, nil
}

// merge takes a record from a peer. It returns true when the record won and
// was applied (or queued for a retry).
func (n *Node) merge(r Record) bool {
	if !r.valid() {
		n.log.Warn("gossip: invalid record dropped", "kind", r.Kind, "key", r.Key, "origin", r.Origin)
		return false
	}
	n.mergeMu.Lock()
	defer n.mergeMu.Unlock()
	n.mu.Lock()
	n.clock = max(n.clock, r.Version) // Lamport: later local changes order after what we saw
	old, ok := n.recs[r.id()]
	if ok && !r.beats(old) {
		n.mu.Unlock()
		return false
	}
	n.recs[r.id()] = r
	n.mu.Unlock()
	n.apply(r)
	n.persistLocked()
	n.retryPending()
	return true
}

// apply runs the Applier; a failure (say a replica whose store has not
// arrived yet) keeps the record pending. Called with mergeMu held.
func (n *Node) apply(r Record) bool {
	if n.o.Applier == nil {
		return true
	}
	if err := n.o.Applier.Apply(r); err != nil {
		n.log.Warn("gossip: apply failed; will retry after later changes", "kind", r.Kind, "key", r.Key, "origin", r.Origin, "version", r.Version, "err", err)
		n.mu.Lock()
		n.pending[r.id()] = r
		n.mu.Unlock()
		return false
	}
	n.mu.Lock()
	delete(n.pending, r.id())
	n.mu.Unlock()
	return true
}

// retryPending re-applies records whose Apply failed, in version order,
// until no more succeed. Called with mergeMu held.
func (n *Node) retryPending() {
	for {
		n.mu.RLock()
		var todo []Record
		for k, r := range n.pending {
			if cur := n.recs[k]; cur.Version == r.Version && cur.Origin == r.Origin {
				todo = append(todo, r)
			}
		}
		n.mu.RUnlock()
		if len(todo) == 0 {
			return
		}
		sort.Slice(todo, func(i, j int) bool { return todo[i].Version < todo[j].Version })
		progress := false
		for _, r := range todo {
			if err := n.o.Applier.Apply(r); err == nil {
				n.mu.Lock()
				delete(n.pending, r.id())
				n.mu.Unlock()
				progress = true
			}
		}
		if !progress {
			return
		}
	}
}

// persistLocked saves the winning records. Called with mergeMu held.
func (n *Node) persistLocked() {
	n.mu.RLock()
	p := persisted{Clock: n.clock, Records: n.sortedLocked()}
	n.mu.RUnlock()
	if err := save(n.o.Dir, p); err != nil {
		n.log.Error("gossip: cannot persist records; they will be re-learned from peers after a restart", "err", err)
	}
}

func (n *Node) sortedLocked() []Record {
	out := make([]Record, 0, len(n.recs))
	for _, r := range n.recs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Records returns the winning record per (Kind, Key), sorted by kind and key.
func (n *Node) Records() []Record {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.sortedLocked()
}

// Record returns the winning record for (kind, key).
func (n *Node) Record(kind, key string) (Record, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	r, ok := n.recs[recKey{kind, key}]
	return r, ok
}

// Version is the highest Lamport version among the winning records: it only
// grows, and converged servers agree on it. Digest tells converged servers
// apart exactly.
func (n *Node) Version() uint64 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var v uint64
	for _, r := range n.recs {
		v = max(v, r.Version)
	}
	return v
}

// Digest is a hash of the winning records' identities and versions: two
// servers have the same digest exactly when they hold the same winners.
func (n *Node) Digest() string {
	h := sha256.New()
	var b [8]byte
	for _, r := range n.Records() {
		h.Write([]byte(r.Kind))
		h.Write([]byte{0})
		h.Write([]byte(r.Key))
		h.Write([]byte{0})
		h.Write([]byte(r.Origin))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(b[:], r.Version)
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// Members lists the servers this node knows, itself included, by name.
func (n *Node) Members() []Member {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close leaves the cluster (peers see a graceful leave, not a failure) and
// stops the listeners. It is safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.close.Do(func() {
		close(n.stop)
		if lerr := n.ml.Leave(time.Second); lerr != nil {
			n.log.Debug("gossip: leave", "err", lerr)
		}
		err = n.ml.Shutdown()
		n.wg.Wait()
	})
	return err
}

// kill stops the node without leaving, as a crash would (tests).
func (n *Node) kill() {
	n.close.Do(func() {
		close(n.stop)
		_ = n.ml.Shutdown()
		n.wg.Wait()
	})
}

// memberAt names the member at a gossip address, for streams memberlist
// dials by address only.
func (n *Node) memberAt(addr string) (string, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, m := range n.members {
		if m.Addr == addr {
			return m.Name, true
		}
	}
	for _, s := range n.o.Seeds {
		if name, a, ok := strings.Cut(s, "/"); ok && a == addr {
			return name, true
		}
	}
	return "", false
}

// Seed is this node's address as other nodes' Options.Seeds want it.
func (n *Node) Seed() string { return n.o.Name + "/" + n.addr }

// listenTransport binds gossip's TCP and UDP listeners. With port 0 the
// kernel picks a free TCP port, but the same UDP port may be taken by
// someone else: pick again (as memberlist's own transport does) rather
// than fail a start that asked for any port.
func listenTransport(host string, port int, logger *log.Logger) (*memberlist.NetTransport, error) {
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger})
		if err == nil {
			return nt, nil
		}
	}
	return nil, err
}

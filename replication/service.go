// Package replication keeps every replica of a public folder converged
// (docs/replication.md). Each server pulls, for every folder one of its
// public stores replicates, what its replica lacks from every other
// replica, over a direct TLS connection authenticated both ways with org
// server certificates (package servercred). What a replica lacks is
// decided by change numbers: package store records every change of a
// public folder with its ChangeID and keeps the folder's CNSet in the same
// transaction, serves the changes missing from a CNSet (ChangesSince) and
// applies a batch idempotently (Apply). The same pull is normal
// replication, catch-up after a partition or outage, backfill of a new or
// restored store, and the status of `pfrouter admin replica status`.
//
// Neighbours: store (change tracking), directory (who replicates what),
// linkstate (a server routing cannot reach is not replicated with: a
// connector down is a partition), node (wiring, listener, metrics).
package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"pfrouter/directory"
	"pfrouter/store"
)

// Defaults of the `replication:` section.
const (
	DefaultMaxBatchBytes = 4 << 20
	DefaultMaxBody       = 64 << 20
	DefaultCompactEvery  = 5 * time.Minute
	// longPoll is how long a source holds a pull that found nothing, so a
	// change is sent the moment it is committed.
	longPoll = 20 * time.Second
	// DefaultBatchWindow: see Options.BatchWindow.
	DefaultBatchWindow = 20 * time.Millisecond
	// connBuffer is the read and write buffer of a replication connection:
	// an answer of 10 KB posts goes out in full TLS records (16 KB), a few
	// posts per write, instead of two records and writes per post.
	connBuffer = 64 << 10
)

// Options configure a Service.
type Options struct {
	Server    string // this server's name
	Directory *directory.Directory
	Store     *store.Store
	Logger    *slog.Logger

	// ServerTLS is the listener's config: org identity, client
	// certificate required. ClientTLS(peer) dials peer, verifying that its
	// certificate names it. PeerServer reads the server name a verified
	// client certificate proves.
	ServerTLS  *tls.Config
	ClientTLS  func(peer string) *tls.Config
	PeerServer func(tls.ConnectionState) (string, bool)

	// Reachable reports whether routing can reach a server now (link
	// state); nil means always. Replication follows it: a connector down
	// partitions replication as it does mail.
	Reachable func(server string) bool

	// Interval 0 replicates at once (a source answers a pull as soon as it
	// has changes); otherwise a folder pair is pulled every Interval.
	Interval      time.Duration
	MaxBatchBytes int   // body bytes per response; 0: DefaultMaxBatchBytes
	MaxBody       int64 // largest post accepted; 0: DefaultMaxBody
	// Schedule gives a folder's schedule in force (the organization's with
	// the folder's own over it; read again at every look at the plan, so a
	// reload takes effect within a second); nil: Interval and
	// MaxBatchBytes for every folder.
	Schedule func(*directory.Folder) Schedule

	// OnApplied is told of every batch applied (metrics, tracking log).
	OnApplied func(Applied)
	// OnHierarchyReady publishes that a public store of this server holds
	// the whole hierarchy now (a store_ready record); nil: readiness is
	// not tracked.
	OnHierarchyReady func(store string) error
	// OnError is told of a failed pull (the pull is retried with backoff).
	OnError func(source string, err error)

	// BatchWindow is how long after its previous answer on a connection a
	// source holds a long poll that finds changes waiting (a batch cut by
	// the limits is never held): while posts arrive in a stream, each pull
	// then carries those of a window, and the per-pull work of both sides
	// (the receiver's commit and sync, the source's read of its log, a TLS
	// round trip) is paid once per window instead of once per post or two.
	// A change after a quiet spell is sent at once. 0: DefaultBatchWindow,
	// negative: none.
	BatchWindow time.Duration
	// MemoMaxAge bounds how long either end of a pull reuses what it read
	// of a folder in which its store's versions say nothing changed
	// (memo.go); 0: memoMaxAge. Tests set it long, so that a change path
	// that forgot its version shows as a change that never arrives.
	MemoMaxAge time.Duration

	// ResyncPage is how many entries of a replica's change log one page
	// of a resync covers (0: store.DefaultResyncPage; at most
	// maxResyncPage, which pullers accept).
	ResyncPage int

	// CompactEvery is how often the change logs of this server's replicas
	// are compacted (compact.go); 0: DefaultCompactEvery, negative: never.
	// CompactInterval, when set, is asked again before every pass (a
	// reload takes effect at the next one) and replaces it.
	CompactEvery    time.Duration
	CompactInterval func() time.Duration
	// SilenceLimit, when set, gives how long a replica may go without
	// pulling before it no longer holds its folders' compaction back
	// (0: forever). It returns to a resync (compact.go).
	SilenceLimit func() time.Duration
}

func (s *Service) resyncPage() int {
	if s.o.ResyncPage <= 0 {
		return store.DefaultResyncPage
	}
	return min(s.o.ResyncPage, maxResyncPage)
}

// Schedule is when and how much of a folder is pulled.
type Schedule struct {
	Interval      time.Duration // 0: at once (long poll)
	MaxBatchBytes int           // post bytes per batch of the folder
}

// schedule is pair p's schedule now.
func (s *Service) schedule(snap *directory.Snapshot, p Pair) Schedule {
	sc := Schedule{Interval: s.o.Interval, MaxBatchBytes: s.o.MaxBatchBytes}
	if s.o.Schedule != nil {
		if f := snap.Folder(p.FolderKey); f != nil {
			sc = s.o.Schedule(f)
		}
	}
	if sc.MaxBatchBytes <= 0 {
		sc.MaxBatchBytes = s.o.MaxBatchBytes
	}
	return sc
}

// Applied describes one applied batch.
type Applied struct {
	Pair   Pair
	Result store.ApplyResult
	// Lag is, for each post added, how long after its origin stored it.
	Lag  []time.Duration
	More bool
}

// Service runs one server's replication: the listener peers pull from and
// the pull loops of its replicas.
type Service struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	loops   map[string]context.CancelFunc // source server -> its pull loop
	conns   map[net.Conn]struct{}
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	kick    chan struct{}
	backlog map[string]int // "local|folderKey|source" -> changes the last pull left behind
	// acks holds, per local replica and folder, the CN set each other
	// replica last sent with a pull: what it has acknowledged (compaction).
	acks map[ackKey]store.CNSet
	// heard is when each acknowledgement last came; started, when this
	// service did (a replica never heard counts as heard then).
	heard   map[ackKey]time.Time
	started time.Time
	// resyncPages counts the resync pages applied (tests).
	resyncPages atomic.Int64
	// passes counts manage's passes (tests: an idle server makes none).
	passes atomic.Int64
	// memoHits counts folders answered from the source's memo (tests).
	memoHits atomic.Int64
}

// New makes a Service; Start runs it.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.MemoMaxAge == 0 {
		o.MemoMaxAge = memoMaxAge
	}
	if o.BatchWindow == 0 {
		o.BatchWindow = DefaultBatchWindow
	}
	if o.Store != nil && o.Directory != nil {
		dir := o.Directory
		o.Store.SetFolderIdentity(func(st, name string) string {
			snap := dir.Snapshot()
			if s := snap.Store(st); s != nil {
				if f := snap.Folder(directory.FolderKey(s.Hierarchy, name)); f != nil {
					return f.ID
				}
			}
			return ""
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{o: o, log: o.Logger.With("component", "replication"), loops: map[string]context.CancelFunc{},
		conns: map[net.Conn]struct{}{}, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1), backlog: map[string]int{},
		acks: map[ackKey]store.CNSet{}, heard: map[ackKey]time.Time{}, started: time.Now()}
}

// Serve answers peers' pulls on l until Close.
func (s *Service) Serve(l net.Listener) error {
	tl := tls.NewListener(l, s.o.ServerTLS)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		l.Close()
	}()
	for {
		c, err := tl.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if !s.track(c) {
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serveConn(c.(*tls.Conn))
		}()
	}
}

func (s *Service) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Service) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// serveConn answers one peer's pulls.
func (s *Service) serveConn(c *tls.Conn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.HandshakeContext(s.ctx); err != nil {
		s.log.Debug("replication handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	peer, ok := s.o.PeerServer(c.ConnectionState())
	if !ok || s.o.Directory.Snapshot().Server(peer) == nil {
		s.log.Warn("replication connection refused: not a server of the organization", "remote", c.RemoteAddr().String(), "peer", peer)
		return
	}
	r, w := bufio.NewReaderSize(c, connBuffer), bufio.NewWriterSize(c, connBuffer)
	var last time.Time // when the previous answer went out
	memo := quietMemo{}
	var prev []pullFolder // the last request, in full (pullFolder.Same)
	for {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		var req pullRequest
		if err := readJSON(r, &req); err != nil {
			return
		}
		if err := expand(&req, prev); err != nil {
			s.log.Warn("replication request refused", "peer", peer, "err", err)
			return
		}
		prev = req.Folders
		if err := s.answer(w, peer, &req, last, memo); err != nil {
			s.log.Debug("replication answer failed", "peer", peer, "err", err)
			return
		}
		if err := w.Flush(); err != nil {
			return
		}
		last = time.Now()
	}
}

// answer serves one pull (see respond) and writes the answer; last is
// when the previous answer on the connection went out.
func (s *Service) answer(w *bufio.Writer, peer string, req *pullRequest, last time.Time, memo quietMemo) error {
	if req.MaxBytes <= 0 || req.MaxBytes > 4*s.o.MaxBatchBytes {
		req.MaxBytes = s.o.MaxBatchBytes
	}
	resp, err := s.respond(s.ctx, peer, req, last, memo)
	if err != nil {
		return err
	}
	if req.Digest != "" {
		resp.Digest = HierarchyDigest(s.o.Directory.Snapshot(), req.Digest)
	}
	if req.Status != nil {
		resp.Status = s.localStatus(s.ctx, req.Status)
	}
	return s.send(w, resp)
}

// collect reads the batches of a request; n counts changes and claims
// that would change the puller's CN sets. memo (nil: none) skips the
// folders whose answer is known to be empty still (memo.go).
func (s *Service) collect(peer string, req *pullRequest, budget int, memo quietMemo) (*pullResponse, int) {
	snap := s.o.Directory.Snapshot()
	resp := &pullResponse{Folders: make([]folderBatch, len(req.Folders))}
	if !s.reachable(peer) {
		// Both ends keep a partition: a peer link state says this server
		// cannot reach gets nothing (its poll waits as if nothing changed)
		// even if its own link state has not caught up yet.
		return resp, 0
	}
	n := 0
	now := time.Now()
	for i, f := range req.Folders {
		key := directory.FolderKey(f.Hierarchy, f.Path)
		mk := memoKey{key, f.Source, f.Local, f.ID}
		ref := store.MailboxRef{Store: f.Source, Name: f.Path}
		// Versions before the reads: a change committed meanwhile makes
		// the next request read the folder again.
		gen, ver := s.o.Store.MailboxGeneration(), s.o.Store.ChangeVersion(ref)
		if memo.quiet(mk, f, snap, gen, ver, now, s.o.MemoMaxAge) {
			// Its acknowledgement is the one noted when the answer was
			// read, at most MemoMaxAge ago (silence_limit is at least a
			// minute).
			s.memoHits.Add(1)
			continue
		}
		if !mayPull(snap, s.o.Server, peer, key, f.Source) {
			resp.Folders[i].Error = fmt.Sprintf("store %s on %s holds no replica of %s for %s", f.Source, s.o.Server, key, peer)
			continue
		}
		if budget <= 0 {
			resp.Folders[i].More = true
			continue
		}
		if f.ID != "" && !s.replicaIs(s.ctx, snap, ref, key, f.ID) {
			continue // this path's replica here holds another folder until the renames settle: nothing yet
		}
		if f.Local != "" && isReplicaOn(snap, key, f.Local, peer) { // mayPull held above
			s.noteAck(f.Source, key, f.Local, f.Have)
		}
		limit := budget
		if f.MaxBytes > 0 {
			limit = min(limit, f.MaxBytes)
		}
		b, err := s.o.Store.ChangesSinceFrom(s.ctx, ref, f.Have, f.Resync, limit, maxChanges, s.resyncPage())
		if err != nil {
			resp.Folders[i].Error = err.Error()
			continue
		}
		if b.Resync {
			resp.Folders[i] = folderBatch{Resync: true, Horizon: b.Horizon, Grant: b.Grant, Live: b.Live,
				From: b.ResyncFrom, To: b.ResyncTo, Last: b.ResyncLast}
			n++
			continue
		}
		for _, c := range b.Changes {
			budget -= len(c.Body)
		}
		resp.Folders[i] = folderBatch{Changes: b.Changes, Claim: b.Claim, More: b.More}
		n += len(b.Changes)
		adds := claimAdds(f.Have, b.Claim)
		if adds {
			n++
		}
		if memo != nil && len(b.Changes) == 0 && !b.More && !adds && f.Resync == nil {
			memo[mk] = quietEntry{snap: snap, gen: gen, ver: ver, have: f.Have, at: now}
		}
	}
	return resp, n
}

// claimAdds reports whether claim holds a CN have lacks.
func claimAdds(have, claim store.CNSet) bool {
	for origin, rs := range claim {
		for _, r := range rs {
			if next, ok := have[origin].NextMissing(r.Lo); ok && next <= r.Hi {
				return true
			}
		}
	}
	return false
}

func (s *Service) send(w *bufio.Writer, resp *pullResponse) error {
	if err := writeJSON(w, resp); err != nil {
		return err
	}
	for _, fb := range resp.Folders {
		for _, c := range fb.Changes {
			if c.Kind == store.ChangeAdd {
				if err := writeFrame(w, c.Body); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Close stops the pull loops and the listener and waits for them.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"pfrouter/directory"
	"pfrouter/store"
)

// Start runs the pull loops: one per source server, started and stopped
// as the directory's replica lists and link state change.
func (s *Service) Start() {
	s.wg.Add(3)
	go s.manage()
	go s.readyLoop()
	go s.compactLoop()
}

// Kick makes the pull loops look at the directory again now (a replica
// was added at run time).
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// partitionPoll is how often a pull loop whose source is unreachable
// looks at link state again.
const partitionPoll = 250 * time.Millisecond

// errPartitioned: the source became unreachable during a pull; its answer
// was dropped.
var errPartitioned = errors.New("source server unreachable over link state")

type loop struct {
	cancel context.CancelFunc
	sig    string
	done   chan struct{}
}

// manage keeps one pull loop per source server whose pairs or
// reachability changed restarted, so a long poll never outlives the plan
// it was made for. Between stopping the old loops and starting the new
// ones it renames and deletes the local replicas of folders renamed or
// deleted at run time (folders.go): no pull of an old name is running
// then, so none can bring a deleted folder back.
func (s *Service) manage() {
	defer s.wg.Done()
	loops := map[string]*loop{}
	defer func() {
		for _, l := range loops {
			l.cancel()
			<-l.done
		}
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	// A pass (the plan, each loop's signature, the replicas reconciled
	// with the directory) costs time in the number of folders this
	// server replicates: tens of milliseconds for 5,000. It runs when
	// something it reads changed: the directory's version, this store's
	// mailboxes, a peer's reachability, a loop that ended, a Kick; or
	// when the last pass left work undone.
	var last passState
	for {
		snap := s.o.Directory.Snapshot()
		now := passState{snap: snap, boxes: s.o.Store.MailboxGeneration(), reach: s.reachability(loops)}
		if !now.same(last) || ended(loops) {
			settled := s.pass(snap, loops)
			last = passState{}
			if settled {
				last = now
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
			last = passState{}
		}
	}
}

// passState is what a pass of manage read.
type passState struct {
	snap  *directory.Snapshot
	boxes uint64 // the store's MailboxGeneration, read before the pass
	reach string // reachability of the source servers of the loops after it
}

func (p passState) same(o passState) bool {
	return p.snap != nil && p.snap.SameVersion(o.snap) && p.boxes == o.boxes && p.reach == o.reach
}

// reachability lists which of the loops' source servers link state
// reaches now.
func (s *Service) reachability(loops map[string]*loop) string {
	servers := slices.Sorted(maps.Keys(loops))
	var b strings.Builder
	for _, server := range servers {
		fmt.Fprintf(&b, "%s=%t;", server, s.reachable(server))
	}
	return b.String()
}

// ended reports whether a pull loop ended on its own.
func ended(loops map[string]*loop) bool {
	for _, l := range loops {
		select {
		case <-l.done:
			return true
		default:
		}
	}
	return false
}

// pass restarts the pull loops whose pairs, schedules or reachability
// changed, reconciles the local replicas with the directory in between,
// and starts the loops of new source servers. It reports false when the
// reconciliation left work to retry.
func (s *Service) pass(snap *directory.Snapshot, loops map[string]*loop) (settled bool) {
	s.passes.Add(1)
	plan := Plan(snap, s.o.Server)
	sigs := map[string]string{}
	for server, pairs := range plan {
		sigs[server] = s.signature(snap, pairs, s.reachable(server))
	}
	for server, l := range loops {
		select {
		case <-l.done: // ended on its own: start again
		default:
			if sig, ok := sigs[server]; ok && l.sig == sig {
				continue
			}
			l.cancel()
			<-l.done
		}
		delete(loops, server)
	}
	settled = s.reconcileFolders(snap)
	for server, pairs := range plan {
		if _, ok := loops[server]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		l := &loop{cancel: cancel, sig: sigs[server], done: make(chan struct{})}
		loops[server] = l
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(l.done)
			s.pullLoop(ctx, server, pairs)
		}()
	}
	return settled
}

// signature changes when a loop must restart: its pairs, their
// schedules (a reload), or the source's reachability.
func (s *Service) signature(snap *directory.Snapshot, pairs []Pair, reachable bool) string {
	var b strings.Builder
	fmt.Fprint(&b, reachable)
	for _, p := range pairs {
		sc := s.schedule(snap, p)
		fmt.Fprintf(&b, "|%s#%s>%s>%s@%s/%d", p.FolderKey, p.FolderID, p.Source, p.Local, sc.Interval, sc.MaxBatchBytes)
	}
	return b.String()
}

func (s *Service) reachable(server string) bool {
	return server == s.o.Server || s.o.Reachable == nil || s.o.Reachable(server)
}

// pullLoop pulls pairs from server until ctx ends: at once while batches
// are cut by the limits, then long polls (or every Interval); after a
// failure again with backoff, on a new connection.
func (s *Service) pullLoop(ctx context.Context, server string, pairs []Pair) {
	var cc *clientConn
	defer func() {
		if cc != nil {
			s.untrack(cc.c)
		}
	}()
	backoff := 500 * time.Millisecond
	wait := time.Duration(0)
	snap := s.o.Directory.Snapshot()
	sched := make([]Schedule, len(pairs)) // as when the loop started: a change restarts it
	for i, p := range pairs {
		sched[i] = s.schedule(snap, p)
	}
	// next is when each pair is due: an immediate pair always is, a
	// scheduled one Interval after its last pull whose batch was not cut.
	next := make([]time.Time, len(pairs))
	memo := pullMemo{}
	for ctx.Err() == nil {
		if !s.reachable(server) {
			// Partitioned: nothing crosses until link state says the
			// server is reachable again (checked here, not left to the
			// manager, so a link that flaps between two of its looks
			// cannot leave this loop parked).
			if cc != nil {
				s.untrack(cc.c)
				cc = nil
			}
			if !sleep(ctx, partitionPoll) {
				return
			}
			wait = 0
			continue
		}
		now := time.Now()
		var due []int
		var soonest time.Time
		for i := range pairs {
			if !next[i].After(now) {
				due = append(due, i)
			} else if soonest.IsZero() || next[i].Before(soonest) {
				soonest = next[i]
			}
		}
		if len(due) == 0 {
			if !sleep(ctx, time.Until(soonest)) {
				return
			}
			wait = 0
			continue
		}
		if wait > 0 && !soonest.IsZero() {
			wait = min(wait, max(time.Until(soonest), time.Millisecond)) // a scheduled pair comes due
		}
		sub := make([]Pair, len(due))
		subSched := make([]Schedule, len(due))
		for k, i := range due {
			sub[k], subSched[k] = pairs[i], sched[i]
		}
		more, err := s.pullOnce(ctx, server, sub, subSched, &cc, wait, memo)
		if errors.Is(err, errPartitioned) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if cc != nil {
				s.untrack(cc.c)
				cc = nil
			}
			s.log.Warn("replication pull failed; retrying", "source_server", server, "retry_in", backoff, "err", err)
			if s.o.OnError != nil {
				s.o.OnError(server, err)
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 30*time.Second)
			wait = 0
			continue
		}
		backoff = 500 * time.Millisecond
		wait = longPoll
		for k, i := range due {
			switch {
			case more[k]:
				wait = 0 // cut by the limits: at once
			case sched[i].Interval > 0:
				next[i] = time.Now().Add(sched[i].Interval)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pullOnce sends one request for pairs and applies the answer. While an
// answer is cut by the limits (a backfill or a catch-up), the next request
// is sent before that answer is applied, asking with the CN sets the
// replicas will hold once it is: the source reads and sends batch n+1
// while batch n is written here. At most two answers are held (the one
// being applied and the next), and an answer is applied only after every
// answer before it was: if applying one fails, the next is dropped with
// the connection and the pull starts again from the CN sets in the store.
//
// more[i] says that pairs[i]'s last batch was cut by the limits (or it was
// resynced): pull it again at once.
func (s *Service) pullOnce(ctx context.Context, server string, pairs []Pair, sched []Schedule, cc **clientConn, wait time.Duration, memo pullMemo) (more []bool, err error) {
	req := &pullRequest{WaitMS: wait.Milliseconds(), Folders: make([]pullFolder, len(pairs))}
	now := time.Now()
	for i, p := range pairs {
		have, cur, err := s.pullState(ctx, p, memo, now)
		if err != nil {
			return nil, err
		}
		req.Folders[i] = pullFolder{Hierarchy: p.Hierarchy, Path: p.Path, Source: p.Source, Have: have, Local: p.Local,
			MaxBytes: sched[i].MaxBatchBytes, ID: p.FolderID, Resync: cur}
		req.MaxBytes = max(req.MaxBytes, sched[i].MaxBatchBytes)
	}
	resp, err := s.fetch(ctx, server, cc, req, wait)
	if err != nil {
		return nil, err
	}
	type fetched struct {
		req  *pullRequest
		resp *pullResponse
		err  error
	}
	for {
		var next chan fetched
		if cut(resp) && ctx.Err() == nil {
			nreq := nextRequest(req, resp)
			next = make(chan fetched, 1)
			go func() {
				r, err := s.fetch(ctx, server, cc, nreq, 0)
				next <- fetched{nreq, r, err}
			}()
		}
		// An answer that arrives after the link went down (a long poll
		// that was already waiting at the source when the connector was
		// marked down) is dropped unapplied: a partition is a partition
		// from the moment link state says so, not from the end of the
		// pending poll.
		err = ctx.Err()
		if err == nil && !s.reachable(server) {
			err = errPartitioned
		}
		if err == nil {
			more, err = s.applyResponse(ctx, pairs, req, resp)
		}
		if next == nil {
			return more, err
		}
		if err != nil {
			if *cc != nil {
				(*cc).c.Close() // the pipelined answer is dropped with the connection
			}
			<-next
			return nil, err
		}
		f := <-next
		if f.err != nil {
			return nil, f.err
		}
		req, resp = f.req, f.resp
	}
}

// pullState is what a pull of p asks with: the local replica's PullSet and
// its resync cursor from p.Source, remembered in memo (nil: none) while
// the store's versions say they did not change (memo.go).
func (s *Service) pullState(ctx context.Context, p Pair, memo pullMemo, now time.Time) (store.CNSet, *store.ResyncCursor, error) {
	ref := store.MailboxRef{Store: p.Local, Name: p.Path}
	k := memoKey{p.FolderKey, p.Source, p.Local, p.FolderID}
	gen, ver := s.o.Store.MailboxGeneration(), s.o.Store.ChangeVersion(ref)
	if e, ok := memo[k]; ok && e.gen == gen && e.ver == ver && now.Sub(e.at) < s.o.MemoMaxAge {
		return e.have, e.cursor, nil // requests only read their CN sets (nextRequest clones before adding)
	}
	have, err := s.o.Store.PullSet(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	cur, err := s.o.Store.ResyncCursor(ctx, ref, p.Source)
	if err != nil {
		return nil, nil, err
	}
	if memo != nil {
		memo[k] = pullEntry{gen: gen, ver: ver, have: have, cursor: cur, at: now}
	}
	return have, cur, nil
}

// fetch sends req to server (or answers it here for a local source) and
// reads the answer.
func (s *Service) fetch(ctx context.Context, server string, cc **clientConn, req *pullRequest, wait time.Duration) (*pullResponse, error) {
	if server == s.o.Server {
		return s.respond(ctx, server, req, time.Time{}, nil)
	}
	if *cc == nil {
		var err error
		if *cc, err = s.dial(ctx, server); err != nil {
			return nil, err
		}
	}
	return (*cc).exchange(ctx, req, s.o.MaxBody, wait)
}

// cut reports whether a folder's batch in resp was cut by the limits.
func cut(resp *pullResponse) bool {
	for _, fb := range resp.Folders {
		if fb.Error == "" && fb.More {
			return true
		}
	}
	return false
}

// nextRequest is the request that follows req once resp is applied: each
// folder's CN set with the batch's changes and claim added.
func nextRequest(req *pullRequest, resp *pullResponse) *pullRequest {
	n := &pullRequest{MaxBytes: req.MaxBytes, Folders: make([]pullFolder, len(req.Folders))}
	for i, f := range req.Folders {
		fb := resp.Folders[i]
		if fb.Error == "" && fb.Resync {
			// The resync's next page, as ApplyResyncPage leaves the cursor.
			f.Have = f.Have.Clone()
			f.Have.Union(fb.Grant)
			f.Resync = nil
			if !fb.Last {
				f.Resync = &store.ResyncCursor{Horizon: fb.Horizon, After: fb.To}
			}
		} else if fb.Error == "" && (len(fb.Changes) > 0 || len(fb.Claim) > 0) {
			f.Have = f.Have.Clone()
			f.Have.Union(fb.Claim)
			for _, c := range fb.Changes {
				if !f.Have.Contains(c.ID) { // the claim covers them; a source that says otherwise is asked for no change twice
					f.Have.Add(c.ID.Origin, c.ID.N, c.ID.N)
				}
			}
		}
		n.Folders[i] = f
	}
	return n
}

// applyResponse applies each folder's batch of resp (the answer to req);
// more[i] reports whether pairs[i]'s batch was cut (or resynced).
func (s *Service) applyResponse(ctx context.Context, pairs []Pair, req *pullRequest, resp *pullResponse) (more []bool, err error) {
	more = make([]bool, len(pairs))
	snap := s.o.Directory.Snapshot()
	for i, fb := range resp.Folders {
		p := pairs[i]
		if fb.Error == "" && !fb.Resync && len(fb.Changes) == 0 && !claimAdds(req.Folders[i].Have, fb.Claim) {
			// Nothing to apply (most folders of most answers): no
			// directory or store reads for it.
			more[i] = fb.More && paired(snap, p)
			continue
		}
		if !paired(snap, p) {
			continue // renamed or deleted meanwhile: never recreate it here
		}
		if fb.Error != "" {
			s.log.Warn("replication source refused a folder", "folder", p.FolderKey, "source", p.Source, "err", fb.Error)
			continue
		}
		ref := store.MailboxRef{Store: p.Local, Name: p.Path}
		if !s.replicaIs(ctx, snap, ref, p.FolderKey, p.FolderID) {
			continue // the path passed to another folder and the replicas are not renamed yet (folders.go)
		}
		if fb.Resync {
			s.resyncPages.Add(1)
			n, err := s.o.Store.ApplyResyncPage(ctx, ref, p.Source,
				store.ResyncPage{Horizon: fb.Horizon, From: fb.From, To: fb.To, Last: fb.Last, Grant: fb.Grant, Live: fb.Live})
			if err != nil {
				return nil, fmt.Errorf("resync %s from %s: %w", p.FolderKey, p.Source, err)
			}
			s.log.Info("replica resynced: it lacked changes the source's log no longer holds", "folder", p.FolderKey,
				"store", p.Local, "source", p.Source, "deleted", n)
			more[i] = true
			continue
		}
		more[i] = fb.More
		res, err := s.o.Store.Apply(ctx, ref, store.Batch{Changes: fb.Changes, Claim: fb.Claim, More: fb.More})
		if err != nil {
			return nil, fmt.Errorf("apply %s from %s: %w", p.FolderKey, p.Source, err)
		}
		if s.o.OnApplied != nil {
			a := Applied{Pair: p, Result: res, More: fb.More}
			now := time.Now()
			for _, c := range fb.Changes {
				if c.Kind == store.ChangeAdd && res.Added > 0 {
					a.Lag = append(a.Lag, now.Sub(c.At))
				}
			}
			s.o.OnApplied(a)
		}
		s.setBacklog(p, fb.More, len(fb.Changes))
	}
	return more, nil
}

func (s *Service) setBacklog(p Pair, more bool, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := p.Local + "|" + p.FolderKey + "|" + p.Source
	if more {
		s.backlog[k] = n
	} else {
		delete(s.backlog, k)
	}
}

// Backfilling counts the replica pairs whose last pull was cut by the
// limits (more changes waiting at the source).
func (s *Service) Backfilling() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.backlog)
}

// respond answers a pull: at once if changes are waiting or the pull is
// not a long poll, else when a change is committed or the poll's wait ends.
// A long poll is answered no sooner than the batch window after last, the
// previous answer on its connection (zero: none; the window is for a
// stream of posts, see Options.BatchWindow). It also serves a request of
// this server to itself (two replicas on one server).
func (s *Service) respond(ctx context.Context, peer string, req *pullRequest, last time.Time, memo quietMemo) (*pullResponse, error) {
	wait := min(time.Duration(req.WaitMS)*time.Millisecond, longPoll)
	deadline := time.Now().Add(wait)
	if hold := time.Until(last.Add(s.o.BatchWindow)); wait > 0 && !last.IsZero() && hold > 0 {
		if !sleep(ctx, min(hold, wait)) {
			return nil, ctx.Err()
		}
	}
	for {
		changed := s.o.Store.PublicChanged()
		resp, n := s.collect(peer, req, req.MaxBytes, memo)
		if n > 0 || wait <= 0 || time.Now().After(deadline) {
			return resp, nil
		}
		next := time.Until(deadline)
		if !s.reachable(peer) {
			next = min(next, partitionPoll) // answer soon after the link is back
		}
		t := time.NewTimer(next)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

type clientConn struct {
	c *tls.Conn
	// prev is the last request written, in full: the next one abbreviates
	// the folders that did not change (pullFolder.Same).
	prev []pullFolder
	r    *bufio.Reader
	w    *bufio.Writer
}

func (s *Service) dial(ctx context.Context, server string) (*clientConn, error) {
	srv := s.o.Directory.Snapshot().Server(server)
	if srv == nil {
		return nil, fmt.Errorf("server %s is not in the directory", server)
	}
	addr := srv.Listen.Replication
	if addr == "" {
		return nil, fmt.Errorf("server %s has no listen.replication address: its replicas cannot be pulled", server)
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: s.o.ClientTLS(server)}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s replication at %s: %w", server, addr, err)
	}
	tc := c.(*tls.Conn)
	if !s.track(tc) {
		tc.Close()
		return nil, context.Canceled
	}
	return &clientConn{c: tc, r: bufio.NewReaderSize(tc, connBuffer), w: bufio.NewWriterSize(tc, connBuffer)}, nil
}

// exchange sends req and reads and checks the answer with its bodies;
// ctx ending breaks off the exchange (the connection is then unusable).
func (cc *clientConn) exchange(ctx context.Context, req *pullRequest, maxBody int64, wait time.Duration) (_ *pullResponse, err error) {
	cc.c.SetDeadline(time.Now().Add(wait + time.Minute))
	stop := context.AfterFunc(ctx, func() { cc.c.SetDeadline(time.Now()) })
	defer stop()
	defer func() {
		if err != nil {
			cc.prev = nil // the connection is dropped; never abbreviate against a request the source may not have read
		}
	}()
	wire := *req
	wire.Folders = abbreviate(req.Folders, cc.prev)
	if err := writeJSON(cc.w, &wire); err != nil {
		return nil, err
	}
	cc.prev = req.Folders
	if err := cc.w.Flush(); err != nil {
		return nil, err
	}
	var resp pullResponse
	if err := readJSON(cc.r, &resp); err != nil {
		return nil, fmt.Errorf("read replication answer: %w", err)
	}
	if _, err := checkResponse(req, &resp, maxBody); err != nil {
		return nil, fmt.Errorf("bad replication answer: %w", err)
	}
	for i := range resp.Folders {
		for j := range resp.Folders[i].Changes {
			c := &resp.Folders[i].Changes[j]
			if c.Kind != store.ChangeAdd {
				continue
			}
			b, err := readFrame(cc.r, c.Size)
			if err != nil {
				return nil, fmt.Errorf("read post %s: %w", c.ID, err)
			}
			if int64(len(b)) != c.Size {
				return nil, fmt.Errorf("post %s: %d bytes, announced %d", c.ID, len(b), c.Size)
			}
			c.Body = b
		}
	}
	return &resp, nil
}

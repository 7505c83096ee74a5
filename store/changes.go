package store

// Change tracking of public folders, the store's half of replication
// (docs/replication.md; package replication moves the changes between
// servers). Every change of a public folder replica — a post delivered or
// appended, an expunge, a user's flag change — gets a ChangeID and is
// written, in the SAME transaction as the change itself, to:
//
//	g/<id><origin>\0<cn>  -> the change record (JSON Change, no body): the folder's change log
//	k/<id>                -> the folder's CNSet (what this replica holds)
//	m/<id><item>          -> uid of the post whose add change is <item>
//	t/<id><item>          -> tombstone: the post was deleted (by change id)
//	v/<id><item>\0<viewer> -> a user's flags on a post, with the change that set them (last writer wins)
//	w/<id>                -> the CNSet the log was compacted up to (compact.go)
//
// so a crash can never leave a change applied but not recorded or the
// reverse. Remote changes are applied through the same paths with their
// origin's id, and a change already in the CNSet is skipped: applying a
// batch twice is harmless.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Change kinds.
const (
	ChangeAdd    = "add"    // a post (delivered, appended or copied in)
	ChangeDelete = "delete" // a post expunged
	ChangeFlags  = "flags"  // a user's flags on a post (public folder flags are per user)
)

// Change is one change of a public folder replica.
type Change struct {
	ID   ChangeID  `json:"id"`
	Kind string    `json:"kind"`
	Item ChangeID  `json:"item"` // the post: its add change's id
	At   time.Time `json:"at"`   // when it was made at its origin

	// ChangeAdd
	Class      string    `json:"class,omitempty"`
	Date       time.Time `json:"date,omitzero"`
	Size       int64     `json:"size,omitempty"`
	DeliveryID string    `json:"delivery_id,omitempty"`
	// ChangeFlags: the viewer's whole flag set after the change.
	Viewer string   `json:"viewer,omitempty"`
	Flags  []string `json:"flags,omitempty"`

	// Body is a ChangeAdd's message text when read by ChangesSince (the
	// log does not hold it; the message does).
	Body []byte `json:"-"`
}

// flagState is what v/ holds.
type flagState struct {
	Version ChangeID `json:"v"`
	Flags   []string `json:"f,omitempty"`
}

var cnKey = []byte("c/cn")

// loadCN restores the CN clock: CNs go on from the highest ever written,
// or from the current time in microseconds if that is higher. A data
// directory restored from an older copy thus never reissues a CN it had
// issued after the copy was made (unless the clock went back), and the CNs
// of this run start at bootCN.
func (s *Store) loadCN() error {
	var last uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(cnKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if len(b) == 8 {
				last = binary.BigEndian.Uint64(b)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load change number clock: %w", err)
	}
	s.cnLast.Store(last)
	s.bootCN = s.nextCN()
	s.cnLast.Store(s.bootCN - 1)
	return nil
}

// nextCN allocates a change number: above every one allocated before, and
// the current time in microseconds when the clock allows.
func (s *Store) nextCN() uint64 {
	for {
		last := s.cnLast.Load()
		n := max(last+1, uint64(time.Now().UnixMicro()))
		if s.cnLast.CompareAndSwap(last, n) {
			return n
		}
	}
}

// newChange allocates a local change of ref (a public folder replica) and
// records it inside txn: the log entry, the CN clock, and the folder's
// CNSet (kn, saved by the caller). Local CNs of this run are allocated
// under the mailbox lock in increasing order, so every CN of the origin in
// [bootCN, n] that touched this folder is committed or never will be: the
// set may claim the whole interval.
func (s *Store) newChange(txn *badger.Txn, ref MailboxRef, mbox uint64, kn CNSet, c Change) (Change, error) {
	c.ID = ChangeID{Origin: ref.Store, N: s.nextCN()}
	if c.Kind == ChangeAdd {
		c.Item = c.ID
	}
	c.At = time.Now().UTC()
	kn.Add(ref.Store, s.bootCN, c.ID.N)
	if err := txn.Set(cnKey, binary.BigEndian.AppendUint64(nil, c.ID.N)); err != nil {
		return c, err
	}
	return c, setJSON(txn, logKey(mbox, c.ID), c)
}

func logKey(mbox uint64, id ChangeID) []byte {
	k := append(idKey('g', mbox, len(id.Origin)+9), id.Origin...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, id.N)
}

func parseLogKey(k []byte) (ChangeID, bool) {
	rest := k[10:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 || len(rest)-i-1 != 8 {
		return ChangeID{}, false
	}
	return ChangeID{Origin: string(rest[:i]), N: binary.BigEndian.Uint64(rest[i+1:])}, true
}

func itemKey(prefix byte, mbox uint64, item ChangeID) []byte {
	s := item.String()
	return append(idKey(prefix, mbox, len(s)), s...)
}

func flagStatePrefix(mbox uint64, item ChangeID) []byte {
	return append(itemKey('v', mbox, item), 0)
}

func flagStateKey(mbox uint64, item ChangeID, viewer string) []byte {
	return append(flagStatePrefix(mbox, item), viewer...)
}

func knowKey(mbox uint64) []byte { return idKey('k', mbox, 0) }

func loadCNSet(txn *badger.Txn, mbox uint64) (CNSet, error) { return loadSetAt(txn, knowKey(mbox)) }

// loadSetAt reads the CNSet stored at key (empty if none).
func loadSetAt(txn *badger.Txn, key []byte) (CNSet, error) {
	set := CNSet{}
	if err := getJSON(txn, key, &set); err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return nil, err
	}
	return set, nil
}

func exists(txn *badger.Txn, key []byte) (bool, error) {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

func getUID(txn *badger.Txn, key []byte) (uint32, bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var uid uint32
	err = item.Value(func(b []byte) error {
		if len(b) >= 4 { // a dedup record (d/) carries its time after the uid
			uid = binary.BigEndian.Uint32(b)
		}
		return nil
	})
	return uid, uid != 0, err
}

// trackLocalAdd records a post added here to a public folder: called by
// writeGroup once the post's uid is known, before its record is written.
func (s *Store) trackLocalAdd(txn *badger.Txn, r *addReq, mbox uint64, kn CNSet) error {
	c, err := s.newChange(txn, r.ref, mbox, kn, Change{Kind: ChangeAdd, Class: r.msg.Class, Date: r.msg.Date,
		Size: r.msg.Size, DeliveryID: r.msg.ID})
	if err != nil {
		return err
	}
	r.msg.Item = c.Item.String()
	if err := txn.Set(itemKey('m', mbox, c.Item), binary.BigEndian.AppendUint32(nil, r.uid)); err != nil {
		return err
	}
	if r.msg.Chunks == 1 {
		s.recent.put(mbox, c, r.uid, r.last) // the whole body; served only once committed (recent.go)
	}
	if r.viewer != "" && len(r.flags) > 0 {
		// A viewer's flags given with APPEND are a flag change of the
		// new post, replicated like any other.
		f, err := s.newChange(txn, r.ref, mbox, kn, Change{Kind: ChangeFlags, Item: c.Item, Viewer: r.viewer, Flags: r.flags})
		if err != nil {
			return err
		}
		return setJSON(txn, flagStateKey(mbox, c.Item, r.viewer), flagState{Version: f.ID, Flags: r.flags})
	}
	return nil
}

// checkRemoteAdd records a post replicated from another store as known
// and says whether to store it: not if it is already here (by change, by
// item, or by delivery id — the same message delivered to two replicas)
// or was deleted (delete wins: a late add of a deleted post stays deleted).
func checkRemoteAdd(txn *badger.Txn, c *Change, mbox uint64, kn CNSet) (store bool, err error) {
	if kn.Contains(c.ID) {
		return false, nil
	}
	kn.addOwned(c.ID.Origin, c.ID.N)
	if err := setJSON(txn, logKey(mbox, c.ID), c); err != nil {
		return false, err
	}
	if dead, err := exists(txn, itemKey('t', mbox, c.Item)); err != nil || dead {
		return false, err
	}
	if _, held, err := getUID(txn, itemKey('m', mbox, c.Item)); err != nil || held {
		return false, err
	}
	if c.DeliveryID != "" {
		if uid, held, err := getUID(txn, dedupKey(mbox, c.DeliveryID)); err != nil || held {
			if held {
				// One message, two items: either's delete removes it.
				err = txn.Set(itemKey('m', mbox, c.Item), binary.BigEndian.AppendUint32(nil, uid))
			}
			return false, err
		}
	}
	return true, nil
}

// linkRemoteAdd maps a stored remote post's item to its uid and gives it
// the flags users set on it elsewhere before it arrived here (read through
// fv, see flagView).
func linkRemoteAdd(txn *badger.Txn, fv *flagView, mbox uint64, item ChangeID, uid uint32, modSeq uint64) error {
	if err := txn.Set(itemKey('m', mbox, item), binary.BigEndian.AppendUint32(nil, uid)); err != nil {
		return err
	}
	return fv.each(mbox, item, func(viewer string, st flagState) error {
		if len(st.Flags) == 0 {
			return nil
		}
		return setJSON(txn, privFlagsKey(mbox, viewer, uid), privFlags{Flags: st.Flags, ModSeq: modSeq})
	})
}

// flagView reads the flag states (v/) of posts a group commit is adding
// from other replicas, with one read-only iterator for the whole group. A
// flag state of a post not yet held was committed by an earlier
// transaction under the mailbox lock the group holds (applyOthers), and
// the group itself never writes one for a remote post, so a read-only
// view sees them all; a prefix iterator on the group's own transaction
// would instead sort every pending write of the group for each post.
type flagView struct {
	db  *badger.DB
	txn *badger.Txn
	it  *badger.Iterator
}

func (fv *flagView) each(mbox uint64, item ChangeID, fn func(viewer string, st flagState) error) error {
	if fv.it == nil {
		fv.txn = fv.db.NewTransaction(false)
		fv.it = fv.txn.NewIterator(badger.IteratorOptions{Prefix: idKey('v', mbox, 0)})
	}
	prefix := flagStatePrefix(mbox, item)
	for fv.it.Seek(prefix); fv.it.ValidForPrefix(prefix); fv.it.Next() {
		var st flagState
		err := fv.it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &st) })
		if err != nil {
			return fmt.Errorf("decode flag state of %s: %w", item, err)
		}
		if err := fn(string(fv.it.Item().Key()[len(prefix):]), st); err != nil {
			return err
		}
	}
	return nil
}

func (fv *flagView) close() {
	if fv.it != nil {
		fv.it.Close()
		fv.txn.Discard()
		fv.it, fv.txn = nil, nil
	}
}

// trackDelete records the local expunge of a post (m, uid) of a public folder.
func (s *Store) trackDelete(txn *badger.Txn, ref MailboxRef, mbox uint64, kn CNSet, m messageRecord) error {
	if m.Item == "" {
		return nil // stored before change tracking: not replicated
	}
	item, err := ParseChangeID(m.Item)
	if err != nil {
		return err
	}
	c, err := s.newChange(txn, ref, mbox, kn, Change{Kind: ChangeDelete, Item: item})
	if err != nil {
		return err
	}
	if err := setJSON(txn, itemKey('t', mbox, item), c.ID); err != nil {
		return err
	}
	return txn.Delete(itemKey('m', mbox, item))
}

// trackFlags records a viewer's new flags on a post of a public folder.
func (s *Store) trackFlags(txn *badger.Txn, ref MailboxRef, mbox uint64, kn CNSet, m messageRecord, viewer string, flags []string) error {
	if m.Item == "" || viewer == "" {
		return nil
	}
	item, err := ParseChangeID(m.Item)
	if err != nil {
		return err
	}
	c, err := s.newChange(txn, ref, mbox, kn, Change{Kind: ChangeFlags, Item: item, Viewer: viewer, Flags: flags})
	if err != nil {
		return err
	}
	return setJSON(txn, flagStateKey(mbox, item, viewer), flagState{Version: c.ID, Flags: flags})
}

// Batch is what ChangesSince found for a replica that holds Have.
type Batch struct {
	Changes []Change
	// Claim is what the receiver may add to its CNSet once every change
	// of the batch is applied: the sender's CNSet, cut where the batch was
	// cut (the sender sent every change it has in Claim that the receiver
	// lacked, or it is covered by a delete the batch carries later).
	Claim CNSet
	// More is set when the batch was cut by the limits.
	More bool
	// Resync is set, with no changes, when the receiver's CN set does not
	// cover the sender's compacted Horizon (compact.go): it may lack a
	// deletion nobody can send any more. Live lists the items of the
	// posts the sender holds whose add is in the horizon, Grant what the
	// receiver may add to its CN set; ApplyResyncPage takes them.
	Resync  bool
	Horizon CNSet
	Grant   CNSet
	Live    []ChangeID
	// A resync goes in pages (resync.go): this one covers the source's
	// log after ResyncFrom up to ResyncTo (to its end if ResyncLast).
	ResyncFrom, ResyncTo ChangeID
	ResyncLast           bool
}

// ChangesSince reads, in one consistent view, the changes of a public
// folder replica that are not in have, in origin then CN order, with the
// bodies of posts, up to maxBytes of bodies (at least one change) and
// maxChanges changes. A post deleted since is left out: the claim covers
// its add, and its delete is sent. A folder this store does not hold
// yields an empty batch.
func (s *Store) ChangesSince(ctx context.Context, ref MailboxRef, have CNSet, maxBytes, maxChanges int) (Batch, error) {
	return s.changesSince(ctx, ref, have, maxBytes, maxChanges, true, nil, DefaultResyncPage)
}

// DefaultResyncPage is how many entries of the source's change log one
// page of a resync covers (ResyncPage).
const DefaultResyncPage = 20000

// ChangesSinceFrom is ChangesSince for a replica whose resync from this
// source stands at cur (nil: none in progress): while one is, the answer
// is its next page (from the beginning if the horizon changed since),
// covering at most page entries of the log.
func (s *Store) ChangesSinceFrom(ctx context.Context, ref MailboxRef, have CNSet, cur *ResyncCursor, maxBytes, maxChanges, page int) (Batch, error) {
	return s.changesSince(ctx, ref, have, maxBytes, maxChanges, true, cur, page)
}

// changesSince is ChangesSince; without bodies it only lists the changes.
func (s *Store) changesSince(ctx context.Context, ref MailboxRef, have CNSet, maxBytes, maxChanges int, bodies bool, cur *ResyncCursor, page int) (Batch, error) {
	ref = ref.normalize()
	var b Batch
	err := s.viewReplica(ref, func(txn *badger.Txn, rec *mailboxRecord) error {
		know, err := loadCNSet(txn, rec.ID)
		if err != nil {
			return err
		}
		horizon, err := loadHorizon(txn, rec.ID)
		if err != nil {
			return err
		}
		if len(horizon) > 0 {
			// A resync in progress goes on whatever the CN set says now
			// (its grants so far may cover every gap, while posts of later
			// stretches are still to be checked).
			resync := cur != nil
			if !resync {
				if resync, _, err = resyncGrant(txn, rec.ID, horizon, have); err != nil {
					return err
				}
			}
			if resync {
				from := ChangeID{}
				if cur != nil && cur.Horizon.Equal(horizon) {
					from = cur.After
				}
				p, err := resyncPage(txn, rec.ID, horizon, have, from, page)
				if err != nil {
					return err
				}
				b.Resync, b.Horizon, b.Grant, b.Live = true, horizon, p.Grant, p.Live
				b.ResyncFrom, b.ResyncTo, b.ResyncLast = p.From, p.To, p.Last
				return nil
			}
		}
		if bodies {
			s.recent.serving(rec.ID) // keep its next posts at hand (recent.go)
		}
		prefix := idKey('g', rec.ID, 0)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		size := 0
		cut := ChangeID{}
		for it.Rewind(); it.Valid(); {
			if err := ctx.Err(); err != nil {
				return err
			}
			id, ok := parseLogKey(it.Item().Key())
			if !ok {
				it.Next()
				continue
			}
			if have[id.Origin].Contains(id.N) {
				next, ok := have[id.Origin].NextMissing(id.N)
				if !ok { // the receiver holds all of this origin
					it.Seek(append(logKey(rec.ID, ChangeID{Origin: id.Origin, N: ^uint64(0)}), 0))
					continue
				}
				it.Seek(logKey(rec.ID, ChangeID{Origin: id.Origin, N: next}))
				continue
			}
			// A post just added here is read from the recent posts, once
			// this view shows its change and holds it under the same uid.
			var c Change
			recent, hit := s.recent.get(rec.ID, id)
			if hit {
				c = recent.change
			} else if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
				return fmt.Errorf("decode change %s: %w", id, err)
			}
			if c.Kind == ChangeAdd {
				uid, held, err := getUID(txn, itemKey('m', rec.ID, c.Item))
				if err != nil {
					return err
				}
				if !held {
					it.Next()
					continue
				}
				hit = hit && recent.uid == uid
				var m messageRecord
				if hit {
					m.Size = int64(len(recent.body))
				} else if err := getJSON(txn, msgKey(rec.ID, uid), &m); err != nil {
					return err
				}
				if len(b.Changes) > 0 && (size+int(m.Size) > maxBytes || len(b.Changes) >= maxChanges) {
					cut, b.More = ChangeID{Origin: id.Origin, N: id.N - 1}, true
					break
				}
				switch {
				case bodies && hit:
					c.Body = recent.body
				case bodies:
					if c.Body, err = readChunks(txn, uid, m.Body, m.Chunks, m.Size); err != nil {
						return err
					}
				}
				size += int(m.Size)
			} else if len(b.Changes) >= maxChanges {
				cut, b.More = ChangeID{Origin: id.Origin, N: id.N - 1}, true
				break
			}
			b.Changes = append(b.Changes, c)
			it.Next()
		}
		b.Claim = CNSet{}
		for origin, rs := range know {
			switch {
			case !b.More || origin < cut.Origin:
				b.Claim[origin] = rs
			case origin == cut.Origin:
				if below := rs.Below(cut.N); len(below) > 0 {
					b.Claim[origin] = below
				}
			}
		}
		return nil
	})
	if err != nil {
		return Batch{}, fmt.Errorf("read changes of %s: %w", ref, err)
	}
	return b, nil
}

// Page is a resync batch's page, for ApplyResyncPage.
func (b Batch) Page() ResyncPage {
	return ResyncPage{Horizon: b.Horizon, From: b.ResyncFrom, To: b.ResyncTo, Last: b.ResyncLast, Grant: b.Grant, Live: b.Live}
}

// ApplyResult counts what Apply did.
type ApplyResult struct {
	Added, Deleted, Flagged, Skipped int
}

// Apply applies a batch read from another replica's ChangesSince to the
// replica ref (created if missing), then adds the batch's claim to its
// CNSet. Changes already held are skipped, so a batch applied twice (a
// retry after a crash or a lost answer) changes nothing the second time.
// Every change is committed with its CN; the claim is committed last, so
// a crash part-way leaves a CNSet that asks for the rest again.
func (s *Store) Apply(ctx context.Context, ref MailboxRef, b Batch) (ApplyResult, error) {
	var res ApplyResult
	ref = ref.normalize()
	if !ref.Public() || !ref.valid() {
		return res, fmt.Errorf("apply changes to %s: %w", ref, ErrBadName)
	}
	// At every return, after whatever committed (adds also signal from
	// their group commits): pullers of this replica look again.
	defer s.changed(ref)
	rec, err := s.ensure(ref, "")
	if err != nil {
		return res, fmt.Errorf("apply changes to %s: %w", ref, err)
	}
	// Adds first, in the sender's order and sharing group commits, then
	// the rest in order: a flag change of a post added in the same batch
	// then finds it, and a delete always lands after the add it deletes.
	var reqs []*addReq
	defer func() {
		for _, r := range reqs {
			if !r.done {
				s.dropChunks(r.msg.Body, r.msg.Chunks-1)
			}
		}
	}()
	for i := range b.Changes {
		c := &b.Changes[i]
		if c.Kind != ChangeAdd {
			continue
		}
		r, err := s.prepareAdd(ctx, ref, addArgs{id: c.DeliveryID, class: c.Class, date: c.Date, body: c.Body, remote: c})
		if err != nil {
			return res, err
		}
		reqs = append(reqs, r)
	}
	var rest []Change
	for _, c := range b.Changes {
		if c.Kind != ChangeAdd {
			rest = append(rest, c)
		}
	}
	// A batch of posts only commits its claim with its last post; with
	// other changes the claim waits for them (applyOthers).
	var last *addReq
	if len(rest) == 0 && len(reqs) > 0 {
		last = reqs[len(reqs)-1]
		last.claim, last.batch = b.Claim, reqs
		if last.claim == nil {
			last.claim = CNSet{}
		}
	}
	s.commitAddAll(rec.ID, reqs)
	for _, r := range reqs {
		if errors.Is(r.err, errRetry) { // the folder was recreated meanwhile
			r.claim = nil // the claim goes with applyOthers, as for a batch with other changes
			if cur, err := s.view(ref); err == nil {
				r.mbox, r.done, r.err = cur.ID, false, nil
				s.commitAdd(r)
			}
		}
		_, dup, err := s.finishAdd(r)
		if err != nil {
			return res, err
		}
		if dup {
			res.Skipped++
		} else {
			res.Added++
		}
	}
	if last != nil && last.claimed {
		return res, nil
	}
	if err := s.applyOthers(ctx, ref, rest, b.Claim, &res); err != nil {
		return res, err
	}
	return res, nil
}

// applyOthers applies delete and flag changes, then merges claim, under
// the mailbox lock.
func (s *Store) applyOthers(ctx context.Context, ref MailboxRef, changes []Change, claim CNSet, res *ApplyResult) error {
	rec, err := s.view(ref)
	if err != nil {
		return err
	}
	mu := s.lock(rec.ID)
	mu.Lock()
	defer mu.Unlock()
	var expunged []uint32
	flagged := map[string]bool{}
	for start := 0; start <= len(changes); start += batch {
		part := changes[start:min(start+batch, len(changes))]
		last := start+batch > len(changes)
		var gone []uint32
		var r ApplyResult
		err := s.db.Update(func(txn *badger.Txn) error {
			gone, r = nil, ApplyResult{}
			ms := modSeqAlloc{s: s}
			kn, err := loadCNSet(txn, rec.ID)
			if err != nil {
				return err
			}
			for _, c := range part {
				if kn.Contains(c.ID) {
					r.Skipped++
					continue
				}
				kn.addOwned(c.ID.Origin, c.ID.N)
				if err := setJSON(txn, logKey(rec.ID, c.ID), c); err != nil {
					return err
				}
				switch c.Kind {
				case ChangeDelete:
					uid, err := applyRemoteDelete(txn, rec.ID, c, &ms)
					if err != nil {
						return err
					}
					if uid != 0 {
						gone = append(gone, uid)
						r.Deleted++
					} else {
						r.Skipped++
					}
				case ChangeFlags:
					ok, err := applyRemoteFlags(txn, rec.ID, c, &ms)
					if err != nil {
						return err
					}
					if ok {
						r.Flagged++
						flagged[c.Viewer] = true
					} else {
						r.Skipped++
					}
				default:
					return fmt.Errorf("change %s: unknown kind %q", c.ID, c.Kind)
				}
			}
			if last {
				kn.Union(claim)
			}
			return setJSON(txn, knowKey(rec.ID), kn)
		})
		if err != nil {
			return fmt.Errorf("apply changes to %s: %w", ref, err)
		}
		expunged = append(expunged, gone...)
		res.Deleted += r.Deleted
		res.Flagged += r.Flagged
		res.Skipped += r.Skipped
	}
	if len(expunged) > 0 {
		if err := s.dropPrivateFlags(rec.ID, expunged); err != nil {
			s.log.Warn("drop private flags of expunged posts", "mailbox", ref.String(), "err", err)
		}
	}
	for _, uid := range expunged {
		s.notify.publish(rec.ID, Event{Kind: EventExpunge, UID: uid})
	}
	for viewer := range flagged {
		s.notify.publish(rec.ID, Event{Kind: EventFlags, Viewer: viewer})
	}
	return nil
}

// applyRemoteDelete tombstones a post and expunges it if held: delete wins over
// any flag change, and over an add that arrives later.
func applyRemoteDelete(txn *badger.Txn, mbox uint64, c Change, ms *modSeqAlloc) (uint32, error) {
	if err := setJSON(txn, itemKey('t', mbox, c.Item), c.ID); err != nil {
		return 0, err
	}
	uid, held, err := getUID(txn, itemKey('m', mbox, c.Item))
	if err != nil || !held {
		return 0, err
	}
	if err := txn.Delete(itemKey('m', mbox, c.Item)); err != nil {
		return 0, err
	}
	if ok, err := removeMessage(txn, mbox, uid, ms); err != nil || !ok {
		return 0, err
	}
	return uid, nil
}

// removeMessage deletes the message uid of mbox, body included, and
// records the expunge for CONDSTORE/QRESYNC sessions; false if it was gone.
func removeMessage(txn *badger.Txn, mbox uint64, uid uint32, ms *modSeqAlloc) (bool, error) {
	var m messageRecord
	if err := getJSON(txn, msgKey(mbox, uid), &m); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return false, nil
		}
		return false, err
	}
	if err := txn.Delete(msgKey(mbox, uid)); err != nil {
		return false, err
	}
	if err := deleteBody(txn, m); err != nil {
		return false, err
	}
	return true, ms.expunged(txn, mbox, uid)
}

// applyRemoteFlags sets a viewer's flags on a post unless a later flag change
// of the same viewer and post is already here (last writer wins by change
// id) or the post is deleted.
func applyRemoteFlags(txn *badger.Txn, mbox uint64, c Change, ms *modSeqAlloc) (bool, error) {
	if dead, err := exists(txn, itemKey('t', mbox, c.Item)); err != nil || dead {
		return false, err
	}
	key := flagStateKey(mbox, c.Item, c.Viewer)
	var cur flagState
	if err := getJSON(txn, key, &cur); err == nil {
		if !cur.Version.Less(c.ID) {
			return false, nil
		}
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return false, err
	}
	flags := NormalizeFlags(c.Flags)
	if err := setJSON(txn, key, flagState{Version: c.ID, Flags: flags}); err != nil {
		return false, err
	}
	uid, held, err := getUID(txn, itemKey('m', mbox, c.Item))
	if err != nil || !held {
		return true, err
	}
	// A change the user made on another replica is a change of this
	// replica for the user's sessions here: it gets a modseq of this store.
	n, err := ms.next(txn, mbox, c.Viewer)
	if err != nil {
		return true, err
	}
	return true, setJSON(txn, privFlagsKey(mbox, c.Viewer, uid), privFlags{Flags: flags, ModSeq: n})
}

// CNSetOf returns what a public folder replica holds (empty if this store
// does not hold the folder yet).
func (s *Store) CNSetOf(ctx context.Context, ref MailboxRef) (CNSet, error) {
	kn, err := s.setOf(ref, knowKey)
	if err != nil {
		return nil, fmt.Errorf("read change numbers of %s: %w", ref, err)
	}
	return kn, nil
}

// PullSet is the CN set a replica pulls with: what it holds (CNSetOf)
// and, of its own origin, every CN from this run's first on. Such a change
// exists nowhere before it is committed here (a local change and its CN
// are one transaction), so the replica holds every one a source can
// send. Without it a long poll, which carries the set of the moment it was
// sent, would be answered with the replica's own changes committed since,
// bodies and all: every post made here while a pull waited came back
// from the source and was skipped (a store restored from an older copy
// still gets back what it lost: those CNs are below this run's first).
func (s *Store) PullSet(ctx context.Context, ref MailboxRef) (CNSet, error) {
	kn, err := s.CNSetOf(ctx, ref)
	if err != nil {
		return nil, err
	}
	kn.Add(ref.normalize().Store, s.bootCN, ^uint64(0))
	return kn, nil
}

// setOf reads the CNSet a public folder replica keeps at key(its id):
// empty if the store does not hold the folder (yet).
func (s *Store) setOf(ref MailboxRef, key func(uint64) []byte) (CNSet, error) {
	ref = ref.normalize()
	set := CNSet{}
	err := s.viewReplica(ref, func(txn *badger.Txn, rec *mailboxRecord) (err error) {
		set, err = loadSetAt(txn, key(rec.ID))
		return err
	})
	return set, err
}

// viewReplica runs fn in a read transaction with the record of replica
// ref (normalized); a replica this store does not hold (yet) runs nothing
// and is no error: it holds nothing.
func (s *Store) viewReplica(ref MailboxRef, fn func(txn *badger.Txn, rec *mailboxRecord) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		rec, err := lookup(txn, ref)
		if errors.Is(err, ErrNoMailbox) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(txn, rec)
	})
}

// Missing counts the changes of a replica's log that a replica holding
// have lacks (a post deleted since counts once, as its delete).
func (s *Store) Missing(ctx context.Context, ref MailboxRef, have CNSet) (int, error) {
	n := 0
	for {
		b, err := s.changesSince(ctx, ref, have, 1<<62, 4096, false, nil, DefaultResyncPage)
		if err != nil {
			return 0, err
		}
		n += len(b.Changes)
		if b.Resync {
			// It may lack compacted deletions: one more, then count
			// what it lacks beyond the horizon.
			n++
			have = have.Clone()
			have.Union(b.Grant)
			continue
		}
		if !b.More {
			return n, nil
		}
		have = have.Clone()
		for _, c := range b.Changes {
			have.Add(c.ID.Origin, c.ID.N, c.ID.N)
		}
	}
}

// ItemsOf lists the replication identity of every message of a public
// folder replica by uid (tests and status compare replicas by it).
func (s *Store) ItemsOf(ctx context.Context, ref MailboxRef) (map[uint32]ChangeID, error) {
	ref = ref.normalize()
	out := map[uint32]ChangeID{}
	err := s.db.View(func(txn *badger.Txn) error {
		rec, err := lookup(txn, ref)
		if err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: msgPrefix(rec.ID), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var m messageRecord
			if err := getJSON(txn, it.Item().Key(), &m); err != nil {
				return err
			}
			if m.Item != "" {
				id, err := ParseChangeID(m.Item)
				if err != nil {
					return err
				}
				out[uidOfMsgKey(it.Item().Key())] = id
			}
		}
		return nil
	})
	return out, err
}

// feed wakes whoever waits for the next public folder change (the
// replication server's long polls).
type feed struct {
	mu sync.Mutex
	ch chan struct{}
}

func (f *feed) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == nil {
		f.ch = make(chan struct{})
	}
	return f.ch
}

func (f *feed) signal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch != nil {
		close(f.ch)
		f.ch = nil
	}
}

// PublicChanged returns a channel closed at the next committed change of
// any public folder of this store.
func (s *Store) PublicChanged() <-chan struct{} { return s.feed.wait() }

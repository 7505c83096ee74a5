package imapd

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"

	"pfrouter/internal/imapserver"
	"pfrouter/store"
)

// listEntry is one mailbox LIST can report.
type listEntry struct {
	name       string
	specialUse string
	noSelect   bool
	// childSubscribed: LIST (SUBSCRIBED RECURSIVEMATCH) lists the entry
	// for a subscribed descendant the patterns miss (CHILDINFO).
	childSubscribed bool
}

// mailboxes lists every name the user can see: personal folders, the
// public root and the visible public folders, with missing parents added
// as \Noselect so every level can be browsed with "%".
func (s *session) mailboxes(ctx context.Context) ([]listEntry, error) {
	var infos []store.MailboxInfo
	if !s.publicOnly {
		var err error
		if infos, err = s.srv.store.ListMailboxes(ctx, s.mailboxStore, s.user); err != nil {
			return nil, err
		}
	}
	byName := map[string]*listEntry{}
	add := func(e listEntry) {
		if old, ok := byName[e.name]; ok {
			if !e.noSelect {
				*old = e
			}
			return
		}
		byName[e.name] = &e
		for i := strings.LastIndexByte(e.name, delim); i > 0; i = strings.LastIndexByte(e.name[:i], delim) {
			if _, ok := byName[e.name[:i]]; !ok {
				byName[e.name[:i]] = &listEntry{name: e.name[:i], noSelect: true}
			}
		}
	}
	for _, mb := range infos {
		if mb.Name == publicRoot || strings.HasPrefix(mb.Name, publicPrefix) {
			continue // cannot be created; never shadow the shared namespace
		}
		add(listEntry{name: mb.Name, specialUse: mb.SpecialUse})
	}
	snap := s.srv.dir.Snapshot()
	add(listEntry{name: publicRoot, noSelect: true})
	for _, f := range s.publicFolders(snap) {
		add(listEntry{name: publicName(f.Path), noSelect: !s.readable(snap, f)})
	}
	out := make([]listEntry, 0, len(byName))
	for _, e := range byName {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func hasChildren(all []listEntry, name string) bool {
	prefix := name + string(delim)
	i := sort.Search(len(all), func(i int) bool { return all[i].name >= prefix })
	return i < len(all) && strings.HasPrefix(all[i].name, prefix)
}

func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, delim, ref, p) {
			return true
		}
	}
	return false
}

func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	patterns = slices.DeleteFunc(slices.Clone(patterns), func(p string) bool { return p == "" })
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	ctx := context.Background()
	all, err := s.mailboxes(ctx)
	if err != nil {
		return err
	}
	var subs []string
	if !s.publicOnly {
		if subs, err = s.srv.store.Subscribed(ctx, s.mailboxStore, s.user); err != nil {
			return err
		}
	}
	subscribed := map[string]bool{}
	for _, n := range subs {
		subscribed[n] = true
	}
	if options.SelectSubscribed {
		// Subscriptions may name mailboxes that no longer exist: they are
		// listed as \NonExistent.
		existing := map[string]listEntry{}
		for _, e := range all {
			existing[e.name] = e
		}
		var names []string
		for n := range subscribed {
			names = append(names, n)
		}
		sort.Strings(names)
		var list []listEntry
		for _, n := range names {
			e, ok := existing[n]
			if !ok {
				e = listEntry{name: n, noSelect: true}
			}
			list = append(list, e)
		}
		if options.SelectRecursiveMatch {
			list = append(list, childInfoEntries(names, subscribed, existing, ref, patterns)...)
			sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
		}
		return s.writeList(w, all, list, existing, subscribed, ref, patterns, options)
	}
	return s.writeList(w, all, all, nil, subscribed, ref, patterns, options)
}

// childInfoEntries are what RECURSIVEMATCH adds to LIST (SUBSCRIBED)
// (RFC 5258 3.5): each unsubscribed ancestor of a subscribed name that
// matches the patterns while that name does not, with CHILDINFO.
func childInfoEntries(names []string, subscribed map[string]bool, existing map[string]listEntry, ref string, patterns []string) []listEntry {
	seen := map[string]bool{}
	var out []listEntry
	for _, n := range names {
		if matchAny(n, ref, patterns) {
			continue
		}
		for i := strings.IndexByte(n, delim); i > 0; i = nextDelim(n, i) {
			parent := n[:i]
			if subscribed[parent] || seen[parent] || !matchAny(parent, ref, patterns) {
				continue
			}
			seen[parent] = true
			e, ok := existing[parent]
			if !ok {
				e = listEntry{name: parent, noSelect: true}
			}
			e.childSubscribed = true
			out = append(out, e)
		}
	}
	return out
}

func (s *session) writeList(w *imapserver.ListWriter, all, list []listEntry, existing map[string]listEntry, subscribed map[string]bool, ref string, patterns []string, options *imap.ListOptions) error {
	for _, e := range list {
		if !matchAny(e.name, ref, patterns) {
			continue
		}
		if options.SelectSpecialUse && e.specialUse == "" {
			continue
		}
		data := &imap.ListData{Mailbox: e.name, Delim: delim}
		if e.childSubscribed {
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if existing != nil {
			if _, ok := existing[e.name]; !ok {
				data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
			}
		}
		if e.noSelect && !slices.Contains(data.Attrs, imap.MailboxAttrNonExistent) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
		}
		if hasChildren(all, e.name) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if (options.ReturnSubscribed || options.SelectSubscribed) && subscribed[e.name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		// Special-use attributes are always returned: clients that do not
		// ask for them still use them to find Sent and Trash.
		if e.specialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(e.specialUse))
		}
		if options.ReturnStatus != nil && !e.noSelect {
			if st, err := s.Status(e.name, options.ReturnStatus); err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	t, err := s.resolve(name)
	if err != nil {
		return nil, err
	}
	if t.noSelect {
		return nil, errNo(imap.ResponseCodeCannot, "Mailbox cannot be selected: "+t.name)
	}
	if !t.canRead() {
		return nil, errNoPerm("No permission to read " + t.name)
	}
	if t.remote {
		// A referred folder has no mod-sequences here: HIGHESTMODSEQ 0
		// (RFC 7162 3.1.2.2).
		opts := *options
		opts.HighestModSeq = false
		return s.remoteStatus(t, &opts)
	}
	ctx := context.Background()
	if t.public {
		if err := s.srv.store.EnsureMailbox(ctx, t.ref, ""); err != nil {
			return nil, err
		}
	}
	st, msgs, err := s.srv.store.Snapshot(ctx, t.ref, s.user)
	if err != nil {
		return nil, storeErr(err, t.name)
	}
	data := &imap.StatusData{Mailbox: t.name, UIDNext: imap.UID(st.UIDNext), UIDValidity: st.UIDValidity, HighestModSeq: st.HighestModSeq}
	if options.NumMessages {
		n := st.Messages
		data.NumMessages = &n
	}
	if options.Size {
		size := st.Size
		data.Size = &size
	}
	if options.NumUnseen || options.NumDeleted {
		var unseen, deleted uint32
		for _, m := range msgs {
			if !store.HasFlag(m.Flags, string(imap.FlagSeen)) {
				unseen++
			}
			if store.HasFlag(m.Flags, string(imap.FlagDeleted)) {
				deleted++
			}
		}
		if options.NumUnseen {
			data.NumUnseen = &unseen
		}
		if options.NumDeleted {
			data.NumDeleted = &deleted
		}
	}
	if options.NumRecent {
		mark, err := s.srv.store.RecentWatermark(ctx, t.ref, s.user)
		if err != nil {
			return nil, err
		}
		var recent uint32
		for _, m := range msgs {
			if m.UID > mark {
				recent++
			}
		}
		data.NumRecent = &recent
	}
	return data, nil
}

// personal resolves a name that must be a personal folder (CREATE,
// DELETE, RENAME): the public namespace is managed by administrators.
func (s *session) personal(name string) (*target, error) {
	name = strings.TrimSuffix(name, string(delim))
	if name == publicRoot || strings.HasPrefix(name, publicPrefix) {
		return nil, errNoPerm("Public folders are managed by the organization's administrators")
	}
	t, err := s.resolve(name)
	if err != nil {
		return nil, errNo(imap.ResponseCodeCannot, "Invalid mailbox name: "+name)
	}
	return t, nil
}

func (s *session) Create(name string, options *imap.CreateOptions) error {
	t, err := s.personal(name)
	if err != nil {
		return err
	}
	var use string
	if options != nil && len(options.SpecialUse) > 0 {
		if len(options.SpecialUse) > 1 {
			return errNo(imap.ResponseCode("USEATTR"), "Only one special-use attribute per mailbox")
		}
		switch a := options.SpecialUse[0]; a {
		case imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrTrash, imap.MailboxAttrJunk, imap.MailboxAttrArchive, imap.MailboxAttrFlagged, imap.MailboxAttrAll:
			use = string(a)
		default:
			return errNo(imap.ResponseCode("USEATTR"), "Unsupported special-use attribute "+string(a))
		}
	}
	ctx := context.Background()
	// Create missing superiors too, as RFC 3501 asks.
	for i := strings.IndexByte(t.name, delim); i > 0; i = nextDelim(t.name, i) {
		parent := store.MailboxRef{Store: s.mailboxStore, User: s.user, Name: t.name[:i]}
		if err := s.srv.store.EnsureMailbox(ctx, parent, ""); err != nil {
			return storeErr(err, t.name[:i])
		}
	}
	return storeErr(s.srv.store.CreateMailbox(ctx, t.ref, use), t.name)
}

func nextDelim(name string, i int) int {
	j := strings.IndexByte(name[i+1:], delim)
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

func (s *session) Delete(name string) error {
	t, err := s.personal(name)
	if err != nil {
		return err
	}
	if t.name == "INBOX" {
		return errNo(imap.ResponseCodeCannot, "INBOX cannot be deleted")
	}
	if s.sel != nil && s.sel.t.ref == t.ref {
		s.unselect()
	}
	return storeErr(s.srv.store.DeleteMailbox(context.Background(), t.ref), t.name)
}

func (s *session) Rename(oldName, newName string, options *imap.RenameOptions) error {
	from, err := s.personal(oldName)
	if err != nil {
		return err
	}
	to, err := s.personal(newName)
	if err != nil {
		return err
	}
	ctx := context.Background()
	for i := strings.IndexByte(to.name, delim); i > 0; i = nextDelim(to.name, i) {
		if to.name[:i] == from.name {
			return errNo(imap.ResponseCodeCannot, "Cannot rename a mailbox into itself")
		}
		parent := store.MailboxRef{Store: s.mailboxStore, User: s.user, Name: to.name[:i]}
		if err := s.srv.store.EnsureMailbox(ctx, parent, ""); err != nil {
			return storeErr(err, to.name[:i])
		}
	}
	return storeErr(s.srv.store.RenameMailbox(ctx, from.ref, to.name, delim), from.name)
}

func (s *session) Subscribe(name string) error {
	t, err := s.resolve(name)
	if err != nil {
		return err
	}
	if !t.public && !s.srv.store.MailboxExists(context.Background(), t.ref) {
		return errNonExistent(t.name)
	}
	return s.srv.store.SetSubscribed(context.Background(), s.subRef(t.name), true)
}

func (s *session) Unsubscribe(name string) error {
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	return s.srv.store.SetSubscribed(context.Background(), s.subRef(name), false)
}

// subRef is where a subscription to an IMAP name is kept: with the user's
// mailboxes, for public folders too.
func (s *session) subRef(name string) store.MailboxRef {
	return store.MailboxRef{Store: s.mailboxStore, User: s.user, Name: name}
}

// readLiteral reads an APPEND literal.
func readLiteral(r imap.LiteralReader) ([]byte, error) {
	buf := make([]byte, r.Size())
	// ReadFull: a literal cut off by a closed connection is an error,
	// never a shorter message.
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("receive literal: %w", err)
	}
	return buf, nil
}

// LSub lists subscribed mailboxes matching pattern (RFC 3501 6.3.9): a
// subscribed mailbox, and, where "%" stops above a subscribed mailbox, its
// parent at that level as \Noselect unless that parent is subscribed too.
func (s *session) LSub(w *imapserver.ListWriter, ref, pattern string) error {
	subs, err := s.srv.store.Subscribed(context.Background(), s.mailboxStore, s.user)
	if err != nil {
		return err
	}
	subscribed := map[string]bool{}
	for _, n := range subs {
		subscribed[n] = true
	}
	listed := map[string]bool{}
	var out []*imap.ListData
	for _, n := range subs {
		if matchAny(n, ref, []string{pattern}) && !listed[n] {
			listed[n] = true
			out = append(out, &imap.ListData{Mailbox: n, Delim: delim})
		}
		for i := strings.IndexByte(n, delim); i > 0; i = nextDelim(n, i) {
			parent := n[:i]
			if subscribed[parent] || listed[parent] || !matchAny(parent, ref, []string{pattern}) {
				continue
			}
			listed[parent] = true
			out = append(out, &imap.ListData{Mailbox: parent, Delim: delim, Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mailbox < out[j].Mailbox })
	for _, d := range out {
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

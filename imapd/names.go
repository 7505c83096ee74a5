package imapd

import (
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"

	"pfrouter/directory"
	"pfrouter/permissions"
	"pfrouter/store"
)

const (
	delim = '/'
	// publicRoot is the shared namespace holding the MAPI public folder
	// tree (SPEC A8).
	publicRoot   = "Public Folders"
	publicPrefix = publicRoot + "/"
)

// target is what an IMAP mailbox name means for this session's user.
type target struct {
	name     string // canonical IMAP name
	ref      store.MailboxRef
	public   bool
	folder   *directory.Folder // public folders only
	rights   permissions.Rights
	noSelect bool // the public root, a folder no replica can be read from, or a missing parent
	// remote: a public folder without a local replica, read by referral
	// from a replica server (remotesel.go).
	remote bool
}

// canRead says whether the user may select the mailbox and read messages.
func (t *target) canRead() bool { return !t.public || t.rights.ReadItems }

// canInsert says whether the user may append or copy messages into it.
func (t *target) canInsert() bool { return !t.public || t.rights.CreateItems }

// canDelete says whether the user may expunge messages from it. Posts are
// shared, so expunging one removes it for everybody: only roles with
// DeleteAll may.
func (t *target) canDelete() bool { return !t.public || t.rights.DeleteAll }

func folderRights(f *directory.Folder, user string) permissions.Rights {
	return permissions.Of(permissions.RoleFor(f.Permissions, user, true))
}

// visible says whether a folder is listed for the user. The permissions
// table grants FolderVisible even to None; over IMAP a folder the user can
// neither read nor post to is hidden, as the access tier promises ("None
// sees nothing").
func visible(r permissions.Rights) bool {
	return r.FolderVisible && (r.ReadItems || r.CreateItems)
}

// publicFolders lists the MAPI folders the user may see, by path.
func (s *session) publicFolders(snap *directory.Snapshot) []*directory.Folder {
	var out []*directory.Folder
	for _, h := range snap.Hierarchies() {
		if h.TLH != "mapi" {
			continue
		}
		for _, f := range snap.FoldersOf(h.Name) {
			if visible(folderRights(f, s.user)) {
				out = append(out, f)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// localReplica returns the public store on this server holding a replica
// of the folder, or "".
func (s *session) localReplica(snap *directory.Snapshot, f *directory.Folder) string {
	for _, r := range snap.Replicas(f.Key) {
		if st := snap.Store(r.Store); st != nil && st.Server == s.srv.name {
			return r.Store
		}
	}
	return ""
}

func publicName(path string) string { return publicRoot + path }

// resolve maps an IMAP name to a target, or returns a NO [NONEXISTENT]
// error for names the user cannot see.
func (s *session) resolve(name string) (*target, error) {
	if strings.EqualFold(name, "INBOX") {
		name = "INBOX"
	}
	if name != publicRoot && !strings.HasPrefix(name, publicPrefix) {
		if s.publicOnly {
			return nil, errNonExistent(name) // a referral session has no personal folders
		}
		if name == "" || strings.HasPrefix(name, string(delim)) || strings.HasSuffix(name, string(delim)) || strings.Contains(name, "//") {
			return nil, errNonExistent(name)
		}
		return &target{name: name, ref: store.MailboxRef{Store: s.mailboxStore, User: s.user, Name: name}}, nil
	}
	if name == publicRoot {
		return &target{name: name, public: true, noSelect: true}, nil
	}
	path := "/" + strings.TrimPrefix(name, publicPrefix)
	snap := s.srv.dir.Snapshot()
	for _, f := range s.publicFolders(snap) {
		if f.Path == path {
			t := &target{name: name, public: true, folder: f, rights: folderRights(f, s.user)}
			if st := s.localReplica(snap, f); st != "" {
				t.ref = store.MailboxRef{Store: st, Name: f.Path}
			} else if ok, why := s.referable(f); ok {
				t.remote = true
			} else {
				t.noSelect = true
				s.srv.log.Info("public folder cannot be selected", "user", s.user, "folder", f.Path, "reason", why)
			}
			return t, nil
		}
		if strings.HasPrefix(f.Path, path+"/") {
			// A parent the hierarchy does not define (or the user cannot
			// see) of a folder the user can see.
			return &target{name: name, public: true, noSelect: true}, nil
		}
	}
	return nil, errNonExistent(name)
}

func errNonExistent(name string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox: " + name}
}

func errNoPerm(text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNoPerm, Text: text}
}

func errNo(code imap.ResponseCode, text string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}

package replication

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"pfrouter/store"
)

// The protocol on a replication connection (TLS with org client
// certificates both ways, see Service): the puller sends a request frame,
// the source answers with a response frame followed by one body frame per
// add change, in the order the response lists them; then the next request.
// A frame is a 4-byte big-endian length and that many bytes.

const (
	// maxHeader bounds a request or response frame (change records,
	// CN sets): a peer cannot make us buffer more than this outside bodies.
	maxHeader = 16 << 20
	// maxChanges bounds the changes of one folder in one response.
	maxChanges = 2000
	// maxResyncPage bounds the log entries one page of a resync covers,
	// so its item list (and, with it, its grant) stays far below
	// maxHeader whatever the folder's size.
	maxResyncPage = 50000
)

// pullRequest asks a source server for what local replicas lack.
type pullRequest struct {
	Folders  []pullFolder `json:"folders"`
	MaxBytes int          `json:"max_bytes"` // body bytes in the whole response (at least one change is sent)
	WaitMS   int64        `json:"wait_ms"`   // nothing to send: wait up to this long for a change (long poll)
	// Digest asks for the source's HierarchyDigest of this hierarchy.
	Digest string `json:"digest,omitempty"`
	// Status asks about the source's replicas of a folder (status.go).
	Status *statusQuery `json:"status,omitempty"`
}

// pullFolder is one replica pair: Source (a store on the serving server)
// sends what a replica holding Have lacks of the folder.
type pullFolder struct {
	Hierarchy string      `json:"hierarchy,omitempty"`
	Path      string      `json:"path,omitempty"`
	Source    string      `json:"source,omitempty"`
	Have      store.CNSet `json:"have"`
	// Local is the replica that pulls: the source keeps its Have as that
	// replica's acknowledgement, for compaction.
	Local string `json:"local,omitempty"`
	// MaxBytes bounds this folder's post bytes in the answer (the
	// folder's max_batch_bytes; at least one change is sent); 0: the
	// request's.
	MaxBytes int `json:"max_bytes,omitempty"`
	// ID is the folder's identity: the source answers only from its
	// replica of that folder, never from another one that holds the path
	// for a moment while concurrent renames settle (folders.go).
	ID string `json:"id,omitempty"`
	// Resync is where the puller's resync from Source stands (nil: none
	// in progress): the source answers with the next page.
	Resync *store.ResyncCursor `json:"resync,omitempty"`
	// Same, alone in an entry on the wire: this folder is, field for
	// field, the one at the same place in the previous request on this
	// connection (which had as many folders). A request names every folder
	// the two servers share, and between two pulls most of them do not
	// change: this keeps a request to a few bytes a folder.
	Same bool `json:"same,omitempty"`
}

// abbreviate is the request's folders as the puller writes them after
// prev on the same connection: each folder equal to prev's at its place
// becomes {Same}.
func abbreviate(folders, prev []pullFolder) []pullFolder {
	if len(prev) != len(folders) {
		return folders
	}
	out := make([]pullFolder, len(folders))
	for i, f := range folders {
		p := prev[i]
		if f.Hierarchy == p.Hierarchy && f.Path == p.Path && f.Source == p.Source && f.Local == p.Local && f.ID == p.ID &&
			f.MaxBytes == p.MaxBytes && f.Resync == nil && p.Resync == nil && sameSet(f.Have, p.Have) {
			out[i] = pullFolder{Same: true}
		} else {
			out[i] = f
		}
	}
	return out
}

// expand restores a request's abbreviated folders from prev, the previous
// request read on the connection.
func expand(req *pullRequest, prev []pullFolder) error {
	for i := range req.Folders {
		if !req.Folders[i].Same {
			continue
		}
		if len(prev) != len(req.Folders) {
			return fmt.Errorf("request abbreviates folder %d of %d, the previous one had %d", i, len(req.Folders), len(prev))
		}
		req.Folders[i] = prev[i]
	}
	return nil
}

// sameSet reports whether two CN sets are written alike (same origins, the
// same ranges in the same order); two equal sets written differently are
// simply sent in full.
func sameSet(a, b store.CNSet) bool {
	if len(a) != len(b) {
		return false
	}
	for origin, ra := range a {
		rb, ok := b[origin]
		if !ok || !slices.Equal(ra, rb) {
			return false
		}
	}
	return true
}

// pullResponse answers a pullRequest, one batch per folder in order.
type pullResponse struct {
	Folders []folderBatch   `json:"folders"`
	Digest  string          `json:"digest,omitempty"`
	Status  []replicaReport `json:"status,omitempty"`
}

type folderBatch struct {
	Changes []store.Change `json:"changes,omitempty"`
	Claim   store.CNSet    `json:"claim,omitempty"`
	More    bool           `json:"more,omitempty"`
	Error   string         `json:"error,omitempty"`
	// Resync: Have does not cover the source's compacted horizon; the
	// puller applies Horizon, Grant and Live (store.ApplyResync), then
	// pulls again.
	Resync  bool             `json:"resync,omitempty"`
	Horizon store.CNSet      `json:"horizon,omitempty"`
	Grant   store.CNSet      `json:"grant,omitempty"`
	Live    []store.ChangeID `json:"live,omitempty"`
	// A resync goes in pages of at most maxResyncPage log entries: this
	// one covers the source's log after From up to To (its end if Last).
	From store.ChangeID `json:"from,omitzero"`
	To   store.ChangeID `json:"to,omitzero"`
	Last bool           `json:"last,omitempty"`
}

func writeFrame(w io.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

var errFrameTooBig = errors.New("replication frame above the limit")

// readFrame reads one frame of at most limit bytes.
func readFrame(r *bufio.Reader, limit int64) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := int64(binary.BigEndian.Uint32(n[:]))
	if size > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooBig, size, limit)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFrame(w, b)
}

func readJSON(r *bufio.Reader, v any) error {
	b, err := readFrame(r, maxHeader)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode replication frame: %w", err)
	}
	return nil
}

// checkResponse validates what a source sent before anything is applied:
// the batch count matches the request, every change is well formed and
// belongs to the kind it claims, and the bodies announced stay within
// maxBody each and the request's budget plus one message in all.
func checkResponse(req *pullRequest, resp *pullResponse, maxBody int64) (bodies int, err error) {
	if len(resp.Folders) != len(req.Folders) {
		return 0, fmt.Errorf("response has %d folders, request %d", len(resp.Folders), len(req.Folders))
	}
	var total, largest int64
	for i, fb := range resp.Folders {
		if len(fb.Live) > maxResyncPage {
			return 0, fmt.Errorf("folder %s: resync page lists %d posts, limit %d", req.Folders[i].Path, len(fb.Live), maxResyncPage)
		}
		if len(fb.Changes) > maxChanges {
			return 0, fmt.Errorf("folder %s: %d changes, limit %d", req.Folders[i].Path, len(fb.Changes), maxChanges)
		}
		for _, c := range fb.Changes {
			if c.ID.Origin == "" || c.Item.Origin == "" {
				return 0, fmt.Errorf("folder %s: change without origin", req.Folders[i].Path)
			}
			switch c.Kind {
			case store.ChangeAdd:
				if c.Size < 0 || c.Size > maxBody {
					return 0, fmt.Errorf("folder %s: post of %d bytes, limit %d", req.Folders[i].Path, c.Size, maxBody)
				}
				if c.Item != c.ID {
					return 0, fmt.Errorf("folder %s: add change %s names another item", req.Folders[i].Path, c.ID)
				}
				total += c.Size
				largest = max(largest, c.Size)
				bodies++
			case store.ChangeDelete:
			case store.ChangeFlags:
				if c.Viewer == "" {
					return 0, fmt.Errorf("folder %s: flag change without a user", req.Folders[i].Path)
				}
			default:
				return 0, fmt.Errorf("folder %s: unknown change kind %q", req.Folders[i].Path, c.Kind)
			}
		}
	}
	if total > int64(req.MaxBytes)+largest {
		return 0, fmt.Errorf("response carries %d body bytes, budget %d", total, req.MaxBytes)
	}
	return bodies, nil
}

package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// stateFile is where a node keeps its winning records, inside Options.Dir.
const stateFile = "gossip-records.json"

type persisted struct {
	Clock   uint64   `json:"clock"`
	Records []Record `json:"records"`
}

// load reads the persisted records; a missing file is an empty state.
func load(dir string) (persisted, error) {
	var p persisted
	if dir == "" {
		return p, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("gossip: read state: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("gossip: state file %s is corrupt (remove it to resync from peers): %w", filepath.Join(dir, stateFile), err)
	}
	return p, nil
}

// save writes the records atomically: a temp file fsync'd then renamed, so
// a crash leaves either the old or the new state, never half of one.
func save(dir string, p persisted) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("gossip: create state dir: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("gossip: encode state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, stateFile+".tmp*")
	if err != nil {
		return fmt.Errorf("gossip: write state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("gossip: write state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("gossip: sync state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("gossip: write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("gossip: replace state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; best effort on filesystems without dir fsync
		d.Close()
	}
	return nil
}

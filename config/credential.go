package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Credential is a value given inline, read from a file, or generated once
// into a default file (0600): the organization secret and admin tokens.
type Credential struct {
	What    string // for error messages, e.g. "secret"
	Inline  string // the value itself, if configured
	File    string // a file holding it, if configured (relative to the org file)
	Default string // where a generated value lives when neither is given
	OrgDir  string // directory relative File paths resolve against
}

// Source says where Resolve takes the value from, for messages: "inline"
// or the file's path.
func (c Credential) Source() string {
	switch {
	case c.Inline != "":
		return "inline"
	case c.File == "":
		return c.Default
	case !filepath.IsAbs(c.File):
		return filepath.Join(c.OrgDir, c.File)
	}
	return c.File
}

// Resolve returns the credential, generating the default file on first use.
// If two processes race to generate it, one wins and the other reads its
// value (O_EXCL).
func (c Credential) Resolve() (string, error) {
	if c.Inline != "" {
		return c.Inline, nil
	}
	path := c.File
	switch {
	case path == "" && c.Default == "":
		return "", fmt.Errorf("no %s configured and no data directory to keep a generated one in", c.What)
	case path == "":
		path = c.Default
	case !filepath.IsAbs(path):
		path = filepath.Join(c.OrgDir, path)
	}
	b, err := readPrivate(path, c.What)
	if err == nil {
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s file %s is empty", c.What, path)
		}
		return v, nil
	}
	if !errors.Is(err, os.ErrNotExist) || c.File != "" {
		if errors.Is(err, errExposed) {
			return "", err
		}
		return "", fmt.Errorf("read %s: %w", c.What, err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("generate %s: %w", c.What, err)
	}
	v := hex.EncodeToString(buf)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create directory for %s: %w", c.What, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return c.Resolve()
	}
	if err != nil {
		return "", fmt.Errorf("write generated %s: %w", c.What, err)
	}
	defer f.Close()
	if _, err := f.WriteString(v + "\n"); err != nil {
		return "", fmt.Errorf("write generated %s: %w", c.What, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write generated %s: %w", c.What, err)
	}
	return v, nil
}

// errExposed marks a credential file others can read.
var errExposed = errors.New("credential file readable by group or others")

// readPrivate reads a credential file, refusing one that group or others
// can read: whoever can read the organization secret can mint server
// certificates, and an admin token runs the admin API.
func readPrivate(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s file %s has mode %04o; run `chmod 600 %s`", errExposed, what, path, perm, path)
	}
	return io.ReadAll(io.LimitReader(f, 1<<16))
}

package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"pfrouter/config"
)

// TokenFile is the generated token's file name in a server's data directory.
const TokenFile = "admin.token"

// ResolveToken returns the admin bearer token: admin.token, else the
// contents of admin.token_file (relative to the config file), else
// dataDir/admin.token, generated (0600) on first use. The server and the
// CLI on the same machine resolve the same token this way.
func ResolveToken(org *config.Org, dataDir string) (string, error) {
	if org.Admin.Token != "" {
		return org.Admin.Token, nil
	}
	path := org.Admin.TokenFile
	if path == "" {
		if dataDir == "" {
			return "", errors.New("admin: no admin.token configured and no data directory to keep a generated one in")
		}
		path = filepath.Join(dataDir, TokenFile)
	} else if !filepath.IsAbs(path) {
		path = filepath.Join(org.Dir, path)
	}
	b, err := os.ReadFile(path)
	if err == nil {
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("admin: token file %s is empty", path)
		}
		return t, nil
	}
	if !errors.Is(err, os.ErrNotExist) || org.Admin.TokenFile != "" {
		return "", fmt.Errorf("admin: read token: %w", err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("admin: generate token: %w", err)
	}
	t := hex.EncodeToString(buf)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("admin: create data directory: %w", err)
	}
	// O_EXCL: if the server and the CLI race to generate, one wins and the
	// other reads its token.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return ResolveToken(org, dataDir)
	}
	if err != nil {
		return "", fmt.Errorf("admin: write generated token: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(t + "\n"); err != nil {
		return "", fmt.Errorf("admin: write generated token: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("admin: write generated token: %w", err)
	}
	return t, nil
}

package admin

import (
	"fmt"
	"path/filepath"

	"pfrouter/config"
)

// TokenFile is the generated token's file name in a server's data directory.
const TokenFile = "admin.token"

// ResolveToken returns the admin bearer token: admin.token, else the
// contents of admin.token_file (relative to the config file), else
// dataDir/admin.token, generated (0600) on first use. The server and the
// CLI on the same machine resolve the same token this way.
func ResolveToken(org *config.Org, dataDir string) (string, error) {
	t, err := tokenCredential(org, dataDir).Resolve()
	if err != nil {
		return "", fmt.Errorf("admin: %w", err)
	}
	return t, nil
}

func tokenCredential(org *config.Org, dataDir string) config.Credential {
	c := config.Credential{What: "admin token", Inline: org.Admin.Token, File: org.Admin.TokenFile, OrgDir: org.Dir}
	if dataDir != "" {
		c.Default = filepath.Join(dataDir, TokenFile)
	}
	return c
}

// TokenSource says where ResolveToken reads the token, for a 401's
// message: "admin.token in FILE" or the token file's path.
func TokenSource(org *config.Org, dataDir string) string {
	src := tokenCredential(org, dataDir).Source()
	if src == "inline" {
		name := org.Path
		if name == "" {
			name = "the organization file"
		}
		return "admin.token in " + name
	}
	return src
}

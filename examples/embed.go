// Package examples carries the demo organization built into the binary: the
// one `pfrouter serve` runs when no --config is given, and that the README
// and the tests use.
package examples

import (
	_ "embed"
	"path/filepath"
)

// Contoso is examples/contoso.yaml.
//
//go:embed contoso.yaml
var Contoso []byte

// ContosoName is the name errors use for the embedded file.
const ContosoName = "embedded:contoso.yaml"

// DemoFileName is the copy of the demo organization `pfrouter serve` writes
// into its data directory when run without --config: that copy is what it
// serves and reloads, so edits to it take effect on reload.
const DemoFileName = "contoso.yaml"

// DemoFile is the path of that copy under a base data directory.
func DemoFile(dataDir string) string { return filepath.Join(dataDir, DemoFileName) }

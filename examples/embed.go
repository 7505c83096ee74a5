// Package examples carries the demo organization built into the binary: the
// one `pfrouter serve` runs when no --config is given, and that the README
// and the tests use.
package examples

import _ "embed"

// Contoso is examples/contoso.yaml.
//
//go:embed contoso.yaml
var Contoso []byte

// ContosoName is the name errors use for the embedded file.
const ContosoName = "embedded:contoso.yaml"

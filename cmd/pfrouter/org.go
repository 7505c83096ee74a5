package main

import (
	"pfrouter/config"
	"pfrouter/examples"
)

// loadOrg reads --config, or the embedded demo organization when it is "".
func loadOrg(path string) (*config.Org, error) {
	if path == "" {
		return config.Parse(examples.Contoso, examples.ContosoName, ".")
	}
	return config.Load(path)
}

package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"pfrouter/config"
	"pfrouter/examples"
)

// configFlag registers --config; PFROUTER_CONFIG gives its default, so a
// shell (or the README's docs test) can point every command at one file.
func configFlag(c *cobra.Command, cfg *string) {
	c.Flags().StringVar(cfg, "config", os.Getenv("PFROUTER_CONFIG"),
		"organization file (env PFROUTER_CONFIG; default: the embedded demo organization, or the copy `serve` wrote into --data-dir)")
}

// loadOrg reads --config, or the embedded demo organization when it is "".
func loadOrg(path string) (*config.Org, error) {
	if path == "" {
		return config.Parse(examples.Contoso, examples.ContosoName, ".")
	}
	return config.Load(path)
}

// loadOrgIn is loadOrg for commands that know the data directory: without
// --config they read the demo copy `serve` wrote there, if there is one,
// so they agree with the servers even after the copy was edited.
func loadOrgIn(path, dataDir string) (*config.Org, error) {
	if path == "" {
		if p := examples.DemoFile(dataDir); fileExists(p) {
			path = p
		}
	}
	return loadOrg(path)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// demoConfig returns the demo copy under dataDir, writing it first when it
// is not there (an existing copy is the operator's, edits included).
func demoConfig(dataDir string) (path string, written bool, err error) {
	path = examples.DemoFile(dataDir)
	if fileExists(path) {
		return path, false, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("data directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return path, false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("write the demo organization: %w", err)
	}
	if _, err := f.Write(examples.Contoso); err != nil {
		f.Close()
		return "", false, fmt.Errorf("write the demo organization: %w", err)
	}
	return path, true, f.Close()
}

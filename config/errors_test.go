package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pfrouter/config"
)

// lineOf is the 1-based line of the first occurrence of s in src.
func lineOf(t *testing.T, src, s string) int {
	t.Helper()
	i := strings.Index(src, s)
	if i < 0 {
		t.Fatalf("%q not in source", s)
	}
	return 1 + strings.Count(src[:i], "\n")
}

// O5: every problem of a file is reported in one pass, each as
// file:line: field: problem, in file order; a key typo does not hide the
// errors after it, and it comes with the nearest known key.
func TestConfigErrorsAllInOnePassO5(t *testing.T) {
	src := strings.NewReplacer(
		"store_min_age: 48h", "store_min_ag: 48h\n  retry_max: 15x",
		"    cost: 10", "    cost: ten",
		"    site: s\n    routing_group: b", "    routing_group: b",
		"kind: mailbox}", "kind: tape}",
	).Replace(full)
	_, err := config.Parse([]byte(src), "org.yaml", ".")
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("want config.Errors, got %v", err)
	}
	want := []string{
		fmt.Sprintf("org.yaml:%d: routing.store_min_ag: unknown key (did you mean store_min_age?)", lineOf(t, src, "store_min_ag")),
		fmt.Sprintf(`org.yaml:%d: routing.retry_max: "15x" is not a duration`, lineOf(t, src, "retry_max")),
		fmt.Sprintf(`org.yaml:%d: connectors[0].cost: "ten" is not a whole number`, lineOf(t, src, "cost: ten")),
		fmt.Sprintf(`org.yaml:%d: servers[0].stores[1].kind: "tape" is not public or mailbox`, lineOf(t, src, "kind: tape")),
		fmt.Sprintf(`org.yaml:%d: servers[1].site: is required: the site the server is in (one of sites: s)`, lineOf(t, src, "name: s2")),
	}
	got := err.Error()
	last := -1
	for _, w := range want {
		i := strings.Index(got, w)
		if i < 0 {
			t.Errorf("missing\n  %s\nin\n%s", w, got)
			continue
		}
		if i < last {
			t.Errorf("%q out of file order in\n%s", w, got)
		}
		last = i
	}
	// The bad cost is reported once, as a type problem, not again as
	// "0 is outside 1..100".
	if strings.Contains(got, "outside 1..100") {
		t.Errorf("a value that did not decode was validated again:\n%s", got)
	}
	for _, e := range es {
		if e.File != "org.yaml" || e.Line == 0 || e.Field == "" {
			t.Errorf("error without file, line or field: %+v", e)
		}
	}
}

func TestConfigErrorCases(t *testing.T) {
	cases := []struct{ name, old, new, want string }{
		{"typo suggests", "store_min_age: 48h", "store_min_ag: 48h", "routing.store_min_ag: unknown key (did you mean store_min_age?)"},
		{"far key no suggestion", "organization: T", "organization: T\nzzzzzzzzzz: 1", "zzzzzzzzzz: unknown key\n"},
		{"nested typo", "    routing_group: a", "    routing_grup: a", "servers[0].routing_grup: unknown key (did you mean routing_group?)"},
		{"bad duration names field", "store_min_age: 48h", "store_min_age: soon", `routing.store_min_age: "soon" is not a duration (use e.g. 48h, 90m or 2d)`},
		{"bad size names field", "    replicas: [p1]", "    replicas: [p1]\n    max_message_size: lots", `folders[0].max_message_size: "lots" is not a size`},
		{"string", "    listen: {smtp: \"127.0.0.1:0\"}\n    stores", "    listen: {smtp: \"127.0.0.1:0\"}\n    data_dir: [x]\n    stores", "servers[0].data_dir: a list is not a string"},
		{"list expected", "domains: [x.example]", "domains: x.example", "domains: expected a list"},
		{"site missing is required", "    site: s\n    routing_group: a", "    routing_group: a", "servers[0].site: is required: the site the server is in (one of sites: s)"},
		{"site unknown", "    site: s\n    routing_group: a", "    site: mars\n    routing_group: a", `servers[0].site: site "mars" is not defined in sites (s)`},
		{"otlp without endpoint", "access:", "telemetry: {traces: otlp}\naccess:", "telemetry.endpoint: is required when traces is otlp"},
		{"otlp malformed endpoint", "access:", "telemetry: {traces: otlp, endpoint: \"127.0.0.1:4318\"}\naccess:", `telemetry.endpoint: "127.0.0.1:4318" is not an http(s)://host:port URL`},
		{"otlp endpoint no host", "access:", "telemetry: {traces: otlp, endpoint: \"http://\"}\naccess:", `telemetry.endpoint: "http://" is not`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(full, c.old, c.new, 1)
			if src == full {
				t.Fatalf("case %q does not apply", c.old)
			}
			_, err := config.Parse([]byte(src), "org.yaml", ".")
			if err == nil || !strings.Contains(err.Error()+"\n", c.want) {
				t.Errorf("got %v\nwant %q", err, c.want)
			}
		})
	}
	ok := strings.Replace(full, "access:", "telemetry: {traces: otlp, endpoint: \"http://127.0.0.1:4318\"}\naccess:", 1)
	if _, err := config.Parse([]byte(ok), "org.yaml", "."); err != nil {
		t.Errorf("good otlp endpoint refused: %v", err)
	}
}

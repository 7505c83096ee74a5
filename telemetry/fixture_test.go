package telemetry

import (
	"testing"
	"time"

	"pfrouter/config"
	"pfrouter/directory"
	"pfrouter/examples"
	"pfrouter/linkstate"
	"pfrouter/routing"
)

// contosoDecision routes rcpt at server in the demo organization, the way
// the queue manager does.
func contosoDecision(t testing.TB, server, rcpt string) routing.Decision {
	t.Helper()
	org, err := config.Parse(examples.Contoso, examples.ContosoName, ".")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	dir, err := directory.New(org, directory.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := linkstate.FromConfig(org)
	if err != nil {
		t.Fatal(err)
	}
	p := routing.Params{MinAge: org.Routing.EffectiveMinAge(), HopLimit: org.Routing.HopLimit, Spread: org.Routing.Spread}
	return routing.Decide(dir.Snapshot(), ls.Graph(), p, routing.Input{At: server, Recipient: rcpt, MessageID: "<m1@contoso.example>", Now: now})
}

package telemetry

import (
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"pfrouter/routing"
)

// Span names (O3): one span per hop and per decision.
const (
	SpanReceive = "pfrouter.receive" // a server accepting a message over SMTP (one per hop)
	SpanRoute   = "pfrouter.route"   // one routing decision for one recipient
	SpanRelay   = "pfrouter.relay"   // handing the message to the next server
	SpanDeliver = "pfrouter.deliver" // writing the message into a local store
	SpanNDR     = "pfrouter.ndr"     // generating a non-delivery report
)

// Attribute keys. Message keys go on every span; decision keys on
// SpanRoute (DecisionAttributes).
const (
	KeyServer    = attribute.Key("pfrouter.server")
	KeyQueueID   = attribute.Key("pfrouter.queue_id")
	KeyOriginID  = attribute.Key("pfrouter.origin_id")
	KeyMessageID = attribute.Key("pfrouter.message_id")
	KeyNextHop   = attribute.Key("pfrouter.next_hop")

	KeyRecipient   = attribute.Key("pfrouter.recipient")
	KeyFolder      = attribute.Key("pfrouter.folder")
	KeyHierarchy   = attribute.Key("pfrouter.hierarchy")
	KeyUser        = attribute.Key("pfrouter.user")
	KeyAt          = attribute.Key("pfrouter.at")
	KeyOutcome     = attribute.Key("pfrouter.outcome")
	KeyStep        = attribute.Key("pfrouter.step") // checks | hierarchy | replica | mailbox: the last step reached
	KeyRule        = attribute.Key("pfrouter.rule") // the rule that decided (step 2's, else step 1's)
	KeyStore       = attribute.Key("pfrouter.store")
	KeyDestServer  = attribute.Key("pfrouter.dest_server")
	KeyPath        = attribute.Key("pfrouter.path") // servers from At to the destination
	KeyCost        = attribute.Key("pfrouter.cost")
	KeyLinkState   = attribute.Key("pfrouter.linkstate_version")
	KeyStoreMinAge = attribute.Key("pfrouter.store_min_age")
	KeyCode        = attribute.Key("pfrouter.code")
	KeyReason      = attribute.Key("pfrouter.reason")
	KeyExcluded    = attribute.Key("pfrouter.excluded")
	KeyRerouted    = attribute.Key("pfrouter.rerouted") // step-1 stores that did not know the folder (R12)

	KeyHierStore   = attribute.Key("pfrouter.hierarchy.store")
	KeyHierServer  = attribute.Key("pfrouter.hierarchy.server")
	KeyHierRule    = attribute.Key("pfrouter.hierarchy.rule")
	KeyHierSkipped = attribute.Key("pfrouter.hierarchy.skipped") // "store: reason" each
	KeyHierYoung   = attribute.Key("pfrouter.hierarchy.used_young")

	KeyReplicaStore      = attribute.Key("pfrouter.replica.store")
	KeyReplicaServer     = attribute.Key("pfrouter.replica.server")
	KeyReplicaRule       = attribute.Key("pfrouter.replica.rule")
	KeyReplicaCandidates = attribute.Key("pfrouter.replica.candidates") // "store on server: cost N, H hops[, reason]" each
	KeyConnectors        = attribute.Key("pfrouter.replica.connectors")
)

// MessageAttributes identify a message on a server: put them on every span.
// Empty values are left out.
func MessageAttributes(server, queueID, originID, messageID string) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, 4)
	for _, kv := range [...]attribute.KeyValue{KeyServer.String(server), KeyQueueID.String(queueID), KeyOriginID.String(originID), KeyMessageID.String(messageID)} {
		if kv.Value.AsString() != "" {
			out = append(out, kv)
		}
	}
	return out
}

// DecisionAttributes describes a routing decision (O2, O3): recipient,
// folder, the step reached, the rule taken, each step's candidates with
// why they were skipped, the chosen store and server, path, cost,
// link-state version and store_min_age.
func DecisionAttributes(d routing.Decision) []attribute.KeyValue {
	a := make([]attribute.KeyValue, 0, 32)
	str := func(k attribute.Key, v string) {
		if v != "" {
			a = append(a, k.String(v))
		}
	}
	strs := func(k attribute.Key, v []string) {
		if len(v) > 0 {
			a = append(a, k.StringSlice(v))
		}
	}
	str(KeyRecipient, d.Recipient)
	str(KeyFolder, d.Folder)
	str(KeyHierarchy, d.Hierarchy)
	str(KeyUser, d.User)
	str(KeyAt, d.At)
	str(KeyOutcome, string(d.Outcome))
	a = append(a, KeyStep.String(step(d)))
	rule := ""
	if s := d.Step1; s != nil {
		str(KeyHierStore, s.Store)
		str(KeyHierServer, s.Server)
		str(KeyHierRule, s.Rule)
		a = append(a, KeyStoreMinAge.String(s.MinAge), KeyHierYoung.Bool(s.UsedYoung))
		skipped := make([]string, 0, len(s.Skipped))
		for _, sk := range s.Skipped {
			skipped = append(skipped, sk.Store+": "+sk.Reason)
		}
		strs(KeyHierSkipped, skipped)
		rule = s.Rule
	}
	rerouted := make([]string, 0, len(d.Attempts))
	for _, at := range d.Attempts {
		rerouted = append(rerouted, at.Store+" on "+at.Server)
	}
	strs(KeyRerouted, rerouted)
	if s := d.Step2; s != nil {
		str(KeyReplicaStore, s.Store)
		str(KeyReplicaServer, s.Server)
		str(KeyReplicaRule, s.Rule)
		strs(KeyConnectors, s.Connectors)
		cands := make([]string, 0, len(s.Considered))
		for _, c := range s.Considered {
			line := c.Store + " on " + c.Server + ": unreachable"
			if c.Reachable {
				line = fmt.Sprintf("%s on %s: cost %d, %d hops", c.Store, c.Server, c.Cost, c.Hops)
			}
			if c.Reason != "" {
				line += ", " + c.Reason
			}
			cands = append(cands, line)
		}
		strs(KeyReplicaCandidates, cands)
		if s.Rule != "" {
			rule = s.Rule
		}
	}
	str(KeyRule, rule)
	str(KeyStore, d.Store)
	str(KeyDestServer, d.Server)
	strs(KeyPath, d.Route)
	strs(KeyExcluded, d.Excluded)
	a = append(a, KeyCost.Int(d.Cost), KeyLinkState.Int64(int64(d.LinkStateVersion)))
	str(KeyCode, d.Code)
	str(KeyReason, d.Reason)
	return a
}

// step names the last routing step a decision reached.
func step(d routing.Decision) string {
	switch {
	case d.Step2 != nil:
		return "replica"
	case d.User != "":
		return "mailbox"
	case d.Step1 != nil:
		return "hierarchy"
	default:
		return "checks"
	}
}

// RecordDecision puts d on span: its attributes, and an error status for a
// non-delivery (a queued recipient is not an error). It does nothing on a
// span that is not recording, so with tracing off a decision costs no
// attribute building.
func RecordDecision(span trace.Span, d routing.Decision) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(DecisionAttributes(d)...)
	if d.Outcome == routing.NDR {
		span.SetStatus(codes.Error, strings.TrimSpace(d.Code+" "+d.Reason))
	}
}

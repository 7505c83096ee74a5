package tracking

import (
	"encoding/json"
	"strings"
	"testing"
)

// O4: in JSON, integer details are numbers, Message-IDs keep their angle
// brackets, and what is written reads back as the same text.
func TestDetailsJSONO4(t *testing.T) {
	e := Event{Server: "ex1", Kind: Routed, MessageID: "<a@b>", Details: Details{"cost": "15", "hops": "0", "code": "5.1.1", "queue": "007", "reason": "<x> & y", "neg": "-3"}}
	b, err := marshalNoEscape(e)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"cost":15`, `"hops":0`, `"neg":-3`, `"code":"5.1.1"`, `"queue":"007"`, `"reason":"<x> & y"`, `"message_id":"<a@b>"`} {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %s", s, want)
		}
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for k, v := range e.Details {
		if back.Details[k] != v {
			t.Errorf("details[%s] = %q after a round trip, want %q", k, back.Details[k], v)
		}
	}
	// Records written before details were numbers still read.
	var old Event
	if err := json.Unmarshal([]byte(`{"details":{"cost":"15","up":true}}`), &old); err != nil || old.Details["cost"] != "15" || old.Details["up"] != "true" {
		t.Errorf("old record: %+v %v", old.Details, err)
	}
}

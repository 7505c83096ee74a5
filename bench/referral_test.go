package bench

// "Public folder referrals" benchmarks (see README.md, issue 13): FETCH of
// a public folder whose replica is on the session's server against FETCH
// of one read by referral from another server, in one organization and one
// run, so their ratio is the referral overhead on one machine state.
//
//	go test ./bench/ -run '^$' -bench 'ReferralFetch' -benchtime 20x

import (
	"testing"
	"time"

	"pfrouter/bench/imapload/load"
	"pfrouter/node"
	"pfrouter/store"
)

// referralBenchOrg: alice's mailbox and /Local's replica on s1; /Remote's
// only replica on s2, in another routing group across a connector.
const referralBenchOrg = `
organization: BenchReferral
domains: [contoso.example]
secret: bench-secret-0123456789abcdef0123
access: {login_type: PlainTextLogin}
routing_groups: [{name: rg-a}, {name: rg-b}]
connectors: [{name: ab, between: [rg-a, rg-b], cost: 10}]
sites: [{name: tokyo}]
servers:
  - {name: s1, site: tokyo, routing_group: rg-a, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"},
     stores: [{name: s1-mbx, kind: mailbox, created: "2020-01-01T00:00:00Z"}, {name: s1-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
  - {name: s2, site: tokyo, routing_group: rg-b, listen: {smtp: "127.0.0.1:0", imap: "127.0.0.1:0"},
     stores: [{name: s2-pub, kind: public, hierarchy: PF, created: "2020-01-01T00:00:00Z"}]}
hierarchies: [{name: PF, tlh: mapi}]
folders:
  - {path: /Local, hierarchy: PF, replicas: [s1-pub], permissions: {Default: Reviewer}}
  - {path: /Remote, hierarchy: PF, replicas: [s2-pub], permissions: {Default: Reviewer}}
users:
  - {name: alice, addresses: [alice@contoso.example], mailbox_store: s1-mbx, password: alice-pw}
`

func startReferralBenchOrg(b *testing.B) *node.Cluster {
	b.Helper()
	c := startBenchOrg(b, referralBenchOrg)
	fillMailbox(b, c.Nodes["s1"].Store, store.Delivery{Store: "s1-pub", Folder: "/Local", Class: "IPM.Post"})
	fillMailbox(b, c.Nodes["s2"].Store, store.Delivery{Store: "s2-pub", Folder: "/Remote", Class: "IPM.Post"})
	return c
}

// BenchmarkReferralFetch: one FETCH 1:* (BODY.PEEK[HEADER]) and one FETCH
// 1:* (BODY.PEEK[]) of a 1,000-message public folder per op, through s1's
// listener, for the local folder and the referred one.
func BenchmarkReferralFetch(b *testing.B) {
	c := startReferralBenchOrg(b)
	cfg := load.Config{Addr: imapAddr(c, "s1"), User: "alice", Pass: "alice-pw", Timeout: time.Minute}
	for _, bodies := range []bool{false, true} {
		for _, folder := range []string{"Local", "Remote"} {
			name := "headers"
			if bodies {
				name = "bodies"
			}
			b.Run(name+"/"+map[string]string{"Local": "local", "Remote": "referred"}[folder], func(b *testing.B) {
				benchFetchAll(b, cfg, "Public Folders/"+folder, bodies)
			})
		}
	}
}

// BenchmarkReferralFetchSideBySide: per op, one FETCH 1:* of the local
// folder and one of the referred folder, back to back on two sessions of
// s1, so that whatever else the machine does weighs on both alike; it
// reports each one's mean and referred/local, the number the 1.3x
// goal is about.
func BenchmarkReferralFetchSideBySide(b *testing.B) {
	c := startReferralBenchOrg(b)
	cfg := load.Config{Addr: imapAddr(c, "s1"), User: "alice", Pass: "alice-pw", Timeout: time.Minute}
	for _, bodies := range []bool{false, true} {
		name := "headers"
		if bodies {
			name = "bodies"
		}
		b.Run(name, func(b *testing.B) {
			local, referred := selectedSession(b, cfg, "Public Folders/Local"), selectedSession(b, cfg, "Public Folders/Remote")
			var spent, cpu [2]time.Duration
			for b.Loop() {
				for i, s := range []*load.Session{local, referred} {
					start, cpu0 := time.Now(), processCPU()
					s.Deadline()
					if m, _, err := load.FetchAll(s.Client, bodies); err != nil || m != imapMessages {
						b.Fatalf("FETCH: %v (%d messages, want %d)", err, m, imapMessages)
					}
					spent[i] += time.Since(start)
					cpu[i] += processCPU() - cpu0
				}
			}
			b.ReportMetric(float64(spent[0].Microseconds())/float64(b.N)/1000, "local-ms/op")
			b.ReportMetric(float64(spent[1].Microseconds())/float64(b.N)/1000, "referred-ms/op")
			b.ReportMetric(float64(spent[1])/float64(spent[0]), "referred/local")
			// CPU of the whole process (client, s1 and s2 are all in it):
			// the work a referral adds, which machine load does not blur.
			b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "cpu-referred/local")
		})
	}
}

// selectedSession logs in with cfg and selects mailbox (imapMessages
// messages).
func selectedSession(b *testing.B, cfg load.Config, mailbox string) *load.Session {
	s, err := load.Dial(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	s.Deadline()
	sel, err := s.Select(mailbox, nil).Wait()
	if err != nil {
		b.Fatalf("SELECT %s: %v", mailbox, err)
	}
	if sel.NumMessages != imapMessages {
		b.Fatalf("SELECT %s: %d messages, want %d", mailbox, sel.NumMessages, imapMessages)
	}
	return s
}

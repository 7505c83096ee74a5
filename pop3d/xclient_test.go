package pop3d

import (
	"context"
	"net"
	"testing"
)

// A proxying front end reports its client's address with XCLIENT before
// logging in; the login request carries it so auth can lock out that
// address instead of the front end's (issue 14).
func TestXClientReportsTheClientAddress(t *testing.T) {
	a := &fakeAuth{md: newMaildrop(msg1)}
	_, addr := startServer(t, Options{Auth: a})
	cl := dial(t, addr)
	ctx := context.WithValue(context.Background(), clientKey{}, &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 4000})
	cl.expect(xclientLine(ctx), "+OK")
	cl.expect("XCLIENT PORT=1", "-ERR")
	cl.login()
	reqs := a.requests()
	if len(reqs) == 0 || reqs[len(reqs)-1].Client == nil || reqs[len(reqs)-1].Client.String() != "198.51.100.7:4000" {
		t.Fatalf("login requests %+v: want Client 198.51.100.7:4000", reqs)
	}
	if xclientLine(context.Background()) != "" {
		t.Fatal("XCLIENT sent without a client address")
	}
}

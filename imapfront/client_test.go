package imapfront

import (
	"bufio"
	"net"
	"strings"
	"testing"
)

// The ID a front end sends before a proxied login carries the client's
// address, and the mailbox server's front end reads it back: auth locks
// out that address, not the front end's (issue 14).
func TestOriginatingAddressRoundTrip(t *testing.T) {
	client := &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 40123}
	cmd, err := readCommand(bufio.NewReader(strings.NewReader(idLine("p1", client))), func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := originatingAddr(cmd.Args); got == nil || got.String() != client.String() {
		t.Fatalf("originatingAddr = %v, want %v", got, client)
	}
	if got := originatingAddr([]string{"(", "name", "thunderbird", ")"}); got != nil {
		t.Fatalf("ID without x-originating-ip gave %v", got)
	}
}

// A 30 KB ID line (imaptest's "id") is accepted: lines up to 64 KB are.
func TestLongIDLineAccepted(t *testing.T) {
	line := "a ID (" + strings.Repeat(`"k" "v" `, 30000/8) + `"k" "v")` + "\r\n"
	cmd, err := readCommand(bufio.NewReader(strings.NewReader(line)), func() error { return nil })
	if err != nil || cmd.Name != "ID" {
		t.Fatalf("30 KB ID: %+v, %v", cmd.Name, err)
	}
}

package pop3d

import (
	"context"
	"net"
	"strconv"
	"strings"
)

// clientKey carries, in a proxy dial's context, the address of the client
// the proxied session serves.
type clientKey struct{}

// xclientLine is the XCLIENT command reporting ctx's client address, or
// "" when there is none.
func xclientLine(ctx context.Context) string {
	client, ok := ctx.Value(clientKey{}).(net.Addr)
	if !ok || client == nil {
		return ""
	}
	host, port, err := net.SplitHostPort(client.String())
	if err != nil {
		return ""
	}
	return "XCLIENT ADDR=" + host + " PORT=" + port
}

// parseXClient reads ADDR= and PORT= from XCLIENT's arguments; nil when
// ADDR is missing or not an IP.
func parseXClient(args string) net.Addr {
	var ip net.IP
	port := 0
	for _, f := range strings.Fields(args) {
		k, v, _ := strings.Cut(f, "=")
		switch strings.ToUpper(k) {
		case "ADDR":
			ip = net.ParseIP(v)
		case "PORT":
			port, _ = strconv.Atoi(v)
		}
	}
	if ip == nil {
		return nil
	}
	return &net.TCPAddr{IP: ip, Port: port}
}

func (ss *session) cmdXClient(cmd command) {
	addr := parseXClient(cmd.Rest)
	if addr == nil {
		ss.badCommand("", "XCLIENT needs ADDR=<ip>")
		return
	}
	ss.client = addr
	ss.reply("+OK")
}

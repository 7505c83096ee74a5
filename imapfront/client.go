package imapfront

import (
	"net"
	"strconv"
	"strings"
)

// clientKey carries, in a dial's context, the address of the client a
// proxied session serves.
type clientKey struct{}

// idLine is the ID command a front end sends before logging in to a
// mailbox server for a client (Dovecot's x-originating-ip convention).
func idLine(tag string, client net.Addr) string {
	host, port, err := net.SplitHostPort(client.String())
	if err != nil {
		return ""
	}
	return tag + ` ID ("x-originating-ip" "` + host + `" "x-originating-port" "` + port + `")` + "\r\n"
}

// originatingAddr reads x-originating-ip (and -port) from ID's
// parameter list; nil when absent or not an IP.
func originatingAddr(args []string) net.Addr {
	var ip net.IP
	port := 0
	for i := 0; i+1 < len(args); i++ {
		switch strings.ToLower(args[i]) {
		case "x-originating-ip":
			ip = net.ParseIP(args[i+1])
			i++
		case "x-originating-port":
			port, _ = strconv.Atoi(args[i+1])
			i++
		}
	}
	if ip == nil {
		return nil
	}
	return &net.TCPAddr{IP: ip, Port: port}
}

package load

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// client is a minimal SMTP client. go-smtp's client is not used because its
// Reset forces a new EHLO before the next MAIL, which would add a round trip
// per message that no real MTA makes; this one sends exactly the commands
// the benchmark counts.
type client struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
}

// Reply is an SMTP reply: code and the text of its last line.
type Reply struct {
	Code int
	Text string
}

// ReplyError is a reply other than the one a command expected.
type ReplyError struct {
	Cmd   string
	Reply Reply
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.Cmd, e.Reply.Code, e.Reply.Text)
}

func dial(addr, helo string, startTLS bool, timeout time.Duration) (*client, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, timeout: timeout}
	c.setConn(conn)
	if err := c.expect("greeting", 220); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.cmd("EHLO", 250, "EHLO %s", helo); err != nil {
		conn.Close()
		return nil, err
	}
	if startTLS {
		if err := c.cmd("STARTTLS", 220, "STARTTLS"); err != nil {
			conn.Close()
			return nil, err
		}
		// Loopback only, against self-signed benchmark certificates:
		// the point is the cost of the encryption, not of the trust.
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
		tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c.setConn(tc)
		if err := c.cmd("EHLO", 250, "EHLO %s", helo); err != nil {
			tc.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *client) setConn(conn net.Conn) {
	c.conn = conn
	c.r = bufio.NewReaderSize(conn, 4096)
	c.w = bufio.NewWriterSize(conn, 32<<10)
}

// readReply reads one (possibly multi-line) reply.
func (c *client) readReply() (Reply, error) {
	var rep Reply
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return rep, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return rep, fmt.Errorf("short reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return rep, fmt.Errorf("bad reply line %q", line)
		}
		rep.Code = code
		if len(line) > 4 {
			rep.Text = line[4:]
		} else {
			rep.Text = ""
		}
		if len(line) == 3 || line[3] != '-' {
			return rep, nil
		}
	}
}

func (c *client) expect(what string, code int) error {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	rep, err := c.readReply()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if rep.Code != code {
		return &ReplyError{Cmd: what, Reply: rep}
	}
	return nil
}

func (c *client) cmd(what string, code int, format string, args ...any) error {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	fmt.Fprintf(c.w, format, args...)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return c.expect(what, code)
}

// data sends DATA, then the payload (already dot-stuffed, CRLF lines,
// without the final dot), then the final dot, and waits for 250.
func (c *client) data(payload []byte, chunks ...[]byte) error {
	if err := c.cmd("DATA", 354, "DATA"); err != nil {
		return err
	}
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	c.w.Write(payload)
	for _, p := range chunks {
		c.w.Write(p)
	}
	c.w.WriteString(".\r\n")
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("message content: %w", err)
	}
	return c.expect("end of data", 250)
}

func (c *client) quit() {
	c.conn.SetDeadline(time.Now().Add(time.Second))
	c.w.WriteString("QUIT\r\n")
	c.w.Flush()
	c.readReply()
	c.conn.Close()
}

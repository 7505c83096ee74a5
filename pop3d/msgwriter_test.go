package pop3d

import (
	"bytes"
	"strings"
	"testing"
)

// render runs a message through msgWriter in chunks of size chunk, so
// CR/LF pairs and leading dots split across writes are covered.
func render(msg string, stuff bool, top, chunk int) string {
	var b bytes.Buffer
	m := newMsgWriter(&b, stuff, top)
	for i := 0; i < len(msg) && !m.Done(); i += chunk {
		m.Write([]byte(msg[i:min(i+chunk, len(msg))]))
	}
	m.Finish()
	return b.String()
}

func TestMsgWriter(t *testing.T) {
	cases := []struct {
		in, want string
		top      int
	}{
		{in: "", want: "", top: -1},
		{in: "a", want: "a\r\n", top: -1},
		{in: "a\nb\n", want: "a\r\nb\r\n", top: -1},
		{in: "a\r\nb", want: "a\r\nb\r\n", top: -1},
		{in: ".\n..\n.x", want: "..\r\n...\r\n..x\r\n", top: -1},
		{in: "a\rb\r\n", want: "a\rb\r\n", top: -1},
		{in: "a\r", want: "a\r\n", top: -1},
		{in: "\r.x\n", want: "\r.x\r\n", top: -1}, // not at line start after a bare CR
		{in: "H: 1\n\nb1\nb2\n", want: "H: 1\r\n\r\n", top: 0},
		{in: "H: 1\r\n\r\nb1\r\nb2\r\n", want: "H: 1\r\n\r\nb1\r\n", top: 1},
		{in: "H: 1\n\n.b1\nb2", want: "H: 1\r\n\r\n..b1\r\nb2\r\n", top: 5},
		{in: "H: 1\nH: 2", want: "H: 1\r\nH: 2\r\n", top: 3}, // no body at all
	}
	for _, c := range cases {
		for _, chunk := range []int{1, 2, 3, 1 << 20} {
			if got := render(c.in, true, c.top, chunk); got != c.want {
				t.Errorf("render(%q, top %d, chunk %d) = %q, want %q", c.in, c.top, chunk, got, c.want)
			}
		}
	}
}

func TestTransmittedSize(t *testing.T) {
	msg := ".a\nb\r\nc"
	n, err := TransmittedSize(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(".a\r\nb\r\nc\r\n")); n != want {
		t.Errorf("TransmittedSize = %d, want %d (no stuffing counted)", n, want)
	}
}

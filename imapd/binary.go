package imapd

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"strings"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// encodeBinary rewrites a single-part message whose body holds NUL
// octets (APPEND of a literal8, RFC 3516) as base64, so that BODY[]
// never sends a NUL in a literal; BINARY[] decodes it back to the octets
// the client sent. Anything else, multipart messages included, is kept
// as it came.
func encodeBinary(raw []byte) []byte {
	if bytes.IndexByte(raw, 0) < 0 {
		return raw
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return raw
	}
	mh := gomessage.Header{Header: h}
	if t, _, _ := mh.ContentType(); strings.HasPrefix(t, "multipart/") || strings.HasPrefix(t, "message/") {
		return raw
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "", "binary", "8bit", "7bit":
	default:
		return raw
	}
	body, err := io.ReadAll(br)
	if err != nil {
		return raw
	}
	h.Set("Content-Transfer-Encoding", "base64")
	var out bytes.Buffer
	if err := textproto.WriteHeader(&out, h); err != nil {
		return raw
	}
	enc := base64.StdEncoding.EncodeToString(body)
	for len(enc) > 76 {
		out.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc + "\r\n")
	return out.Bytes()
}

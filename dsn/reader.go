package dsn

import (
	"bufio"
	"bytes"
)

func bufioReader(b []byte) *bufio.Reader {
	if !bytes.HasSuffix(b, []byte("\r\n\r\n")) && !bytes.HasSuffix(b, []byte("\n\n")) {
		b = append(append([]byte(nil), b...), "\r\n\r\n"...)
	}
	return bufio.NewReader(bytes.NewReader(b))
}

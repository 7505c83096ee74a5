package pop3d

import (
	"bufio"
	"bytes"
	"errors"
)

const (
	// maxCommandLine bounds a command line including CRLF. RFC 2449 §4
	// allows 255 octets; 512 leaves room for long passwords and clients that
	// stretch the rule, like most servers do.
	maxCommandLine = 512
	// maxSASLLine bounds a SASL continuation line (RFC 5034 §4 lets them
	// exceed the command limit).
	maxSASLLine = 4096
	// maxDiscard is how much of an overlong line is skipped before the
	// client is judged to be sending garbage and dropped.
	maxDiscard = 64 << 10
)

var (
	errLineTooLong = errors.New("pop3d: line too long")
	errGarbage     = errors.New("pop3d: overlong line without end, dropping client")
)

// readLine reads one line ending in LF (CRLF or bare LF) of at most limit
// octets including the line end, and returns it without the line end in a
// fresh slice. A longer line is skipped through its LF and reported as
// errLineTooLong so the caller can answer and carry on.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	tooLong := false
	discarded := 0
	for {
		frag, err := r.ReadSlice('\n')
		if !tooLong && len(line)+len(frag) > limit {
			tooLong = true
			discarded = len(line)
			line = nil
		}
		if tooLong {
			discarded += len(frag)
			if discarded > maxDiscard {
				return nil, errGarbage
			}
		} else {
			line = append(line, frag...)
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, errLineTooLong
			}
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// hasBufferedLine reports whether r already holds a complete line, so that
// pipelined commands (RFC 2449 PIPELINING) are answered in one flush, while
// a client waiting for an answer is never left waiting on our buffer.
func hasBufferedLine(r *bufio.Reader) bool {
	n := r.Buffered()
	if n == 0 {
		return false
	}
	b, _ := r.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

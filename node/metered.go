package node

import (
	"context"
	"errors"

	"pfrouter/auth"
	"pfrouter/telemetry"
)

// meteredPolicy counts IMAP4/POP3 logins by result for /metrics; the
// decisions themselves are the auth policy's.
type meteredPolicy struct {
	*auth.Policy
	m *telemetry.Metrics
}

func (p meteredPolicy) Authenticate(ctx context.Context, r auth.Request) (auth.Decision, error) {
	d, err := p.Policy.Authenticate(ctx, r)
	result := "ok"
	var ae *auth.Error
	switch {
	case errors.As(err, &ae):
		result = ae.Kind.String()
	case err != nil:
		result = "error"
	case !d.Local:
		result = "proxied"
	}
	p.m.Login(ctx, string(r.Protocol), result)
	if err == nil {
		p.m.Session(ctx, string(r.Protocol))
	}
	return d, err
}

package tracking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Path is where the admin server mounts Handler; Collect asks there.
const Path = "/v1/tracking"

// collectTimeout bounds each server's answer when ctx has no deadline, so
// one hung server cannot hold up the whole trace.
const collectTimeout = 10 * time.Second

// maxAnswer bounds one server's answer body.
const maxAnswer = 64 << 20

// Endpoint is one server's admin API: base URL (http://127.0.0.1:8011)
// and bearer token. TokenSource says where the token was read, so that a
// refused token (401) names the file the operator must fix. HTTP, when
// set, makes the call: a server asking a peer uses https:// with a client
// presenting its organization certificate and no token.
type Endpoint struct {
	Server, URL, Token, TokenSource string
	HTTP                            *http.Client
}

// Result is the merged route of a message across servers.
type Result struct {
	Events []Event `json:"events"`
	// Unreachable maps each server that did not answer to why.
	Unreachable map[string]string `json:"unreachable,omitempty"`
}

// Collect asks every endpoint for id's events concurrently and merges them
// in time order. A server that does not answer is named in Unreachable,
// never skipped silently.
func Collect(ctx context.Context, eps []Endpoint, id string) Result {
	res := Result{Events: []Event{}, Unreachable: map[string]string{}}
	client := &http.Client{Timeout: collectTimeout}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ep := range eps {
		wg.Go(func() {
			cl := client
			if ep.HTTP != nil {
				cl = ep.HTTP
			}
			events, err := fetch(ctx, cl, ep, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				name := ep.Server
				if name == "" {
					name = ep.URL
				}
				res.Unreachable[name] = shortError(err)
				return
			}
			res.Events = append(res.Events, events...)
		})
	}
	wg.Wait()
	sort.SliceStable(res.Events, func(i, j int) bool {
		a, b := res.Events[i], res.Events[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return a.Server < b.Server
	})
	return res
}

func fetch(ctx context.Context, client *http.Client, ep Endpoint, id string) ([]Event, error) {
	u := strings.TrimRight(ep.URL, "/") + Path + "?id=" + url.QueryEscape(id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("bad admin URL %q: %w", ep.URL, err)
	}
	if ep.Token != "" {
		req.Header.Set("Authorization", "Bearer "+ep.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, maxAnswer)
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(body, 512))
		var e struct {
			Error string `json:"error"`
		}
		why := resp.Status
		if json.Unmarshal(msg, &e) == nil && e.Error != "" {
			why += ": " + e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized && ep.TokenSource != "" {
			why += " (token read from " + ep.TokenSource + ")"
		}
		return nil, errors.New(why)
	}
	var a Answer
	if err := json.NewDecoder(body).Decode(&a); err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	for i := range a.Events {
		if a.Events[i].Server == "" {
			a.Events[i].Server = ep.Server
		}
	}
	return a.Events, nil
}

// shortError says why a server did not answer in a few words.
func shortError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

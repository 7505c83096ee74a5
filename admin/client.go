package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"pfrouter/linkstate"
	"pfrouter/routing"
)

// Client calls one server's admin API.
type Client struct {
	BaseURL string       // e.g. http://127.0.0.1:8011, or https:// with HTTP set for a peer server
	Token   string       // "" sends none (a peer server's read, proven by its TLS certificate)
	HTTP    *http.Client // nil: a client with a 30 s timeout
	By      string       // sent as X-Pfrouter-By: who makes the changes
	// TokenSource says where Token was read (a file's path), so that a
	// 401 tells the operator which token the server refused.
	TokenSource string
}

// APIError is a refusal by the server (4xx/5xx) with its message.
type APIError struct {
	Status  int
	Message string
	Field   string // the request field at fault, for a 400
}

func (e *APIError) Error() string {
	return fmt.Sprintf("server refused (%d %s): %s", e.Status, http.StatusText(e.Status), e.Message)
}

// ConnError means the server could not be reached or answered garbage.
type ConnError struct {
	URL string
	Err error
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("cannot reach admin API at %s: %v", e.URL, e.Err)
}
func (e *ConnError) Unwrap() error { return e.Err }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimRight(c.BaseURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return &ConnError{URL: u, Err: err}
	}
	if c.Token != "" {
		// No token: a peer server reading with its certificate.
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.By != "" {
		req.Header.Set(ByHeader, c.By)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return &ConnError{URL: u, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return &ConnError{URL: u, Err: fmt.Errorf("read reply: %w", err)}
	}
	if resp.StatusCode >= 400 {
		var ae apiError
		if json.Unmarshal(data, &ae) != nil || ae.Error == "" {
			ae.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusUnauthorized && c.TokenSource != "" {
			ae.Error += "; the token was read from " + c.TokenSource +
				" (give the same --config and --data-dir as `pfrouter serve`, or set admin.token_file)"
		}
		return &APIError{Status: resp.StatusCode, Message: ae.Error, Field: ae.Field}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &ConnError{URL: u, Err: fmt.Errorf("undecodable reply: %w", err)}
	}
	return nil
}

// StoreMinAge returns store_min_age in force.
func (c *Client) StoreMinAge(ctx context.Context) (time.Duration, error) {
	var m MinAge
	if err := c.do(ctx, http.MethodGet, "/v1/store-min-age", nil, &m); err != nil {
		return 0, err
	}
	return time.ParseDuration(m.StoreMinAge)
}

// SetStoreMinAge changes store_min_age everywhere (R6, O1).
func (c *Client) SetStoreMinAge(ctx context.Context, d time.Duration) (time.Duration, error) {
	var m MinAge
	if err := c.do(ctx, http.MethodPut, "/v1/store-min-age", MinAge{StoreMinAge: d.String()}, &m); err != nil {
		return 0, err
	}
	return time.ParseDuration(m.StoreMinAge)
}

// LinkState returns the server's link-state view.
func (c *Client) LinkState(ctx context.Context) (LinkState, error) {
	var ls LinkState
	err := c.do(ctx, http.MethodGet, "/v1/linkstate", nil, &ls)
	return ls, err
}

// SetConnectorCost changes a connector's cost (1–100).
func (c *Client) SetConnectorCost(ctx context.Context, name string, cost int) (linkstate.Connector, error) {
	var out linkstate.Connector
	err := c.do(ctx, http.MethodPut, "/v1/connectors/"+url.PathEscape(name)+"/cost", map[string]int{"cost": cost}, &out)
	return out, err
}

// SetConnectorState marks a connector up or down.
func (c *Client) SetConnectorState(ctx context.Context, name string, up bool) (linkstate.Connector, error) {
	var out linkstate.Connector
	err := c.do(ctx, http.MethodPut, "/v1/connectors/"+url.PathEscape(name)+"/state", ConnectorState{Up: &up}, &out)
	return out, err
}

// SetServerMaintenance takes a server down for maintenance (true) or back.
func (c *Client) SetServerMaintenance(ctx context.Context, server string, down bool) (linkstate.Server, error) {
	var out linkstate.Server
	err := c.do(ctx, http.MethodPut, "/v1/servers/"+url.PathEscape(server)+"/maintenance", Maintenance{Maintenance: &down}, &out)
	return out, err
}

// AddStore adds a store; its created time is now.
func (c *Client) AddStore(ctx context.Context, s StoreRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/stores", s, nil)
}

// AddReplica makes a store hold a replica of a folder.
func (c *Client) AddReplica(ctx context.Context, r ReplicaRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/replicas", r, nil)
}

// RenameFolder renames a public folder (and those below it) everywhere.
func (c *Client) RenameFolder(ctx context.Context, r FolderRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/folders/rename", r, nil)
}

// DeleteFolder deletes a public folder (and those below it) everywhere.
func (c *Client) DeleteFolder(ctx context.Context, r FolderRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/folders/delete", r, nil)
}

// SetFolderPermission gives a principal a role on a public folder
// everywhere (r.Role required).
func (c *Client) SetFolderPermission(ctx context.Context, r PermissionRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/folders/permission", r, nil)
}

// RemoveFolderPermission removes a principal's entry from a public
// folder's permissions everywhere.
func (c *Client) RemoveFolderPermission(ctx context.Context, r PermissionRequest) error {
	r.Role = ""
	return c.do(ctx, http.MethodPost, "/v1/folders/permission/remove", r, nil)
}

// Route explains the routing decision for a recipient on server at ("" is
// the server asked); a zero now means the server's clock.
func (c *Client) Route(ctx context.Context, to, at string, now time.Time) (routing.Decision, error) {
	q := url.Values{"to": {to}}
	if at != "" {
		q.Set("at", at)
	}
	if !now.IsZero() {
		q.Set("now", now.Format(time.RFC3339))
	}
	var d routing.Decision
	err := c.do(ctx, http.MethodGet, "/v1/route?"+q.Encode(), nil, &d)
	return d, err
}

// QueueList lists the queued messages.
func (c *Client) QueueList(ctx context.Context) ([]QueueItem, error) {
	var out struct {
		Items []QueueItem `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/queue", nil, &out)
	return out.Items, err
}

// QueueShow returns one queued message.
func (c *Client) QueueShow(ctx context.Context, id string) (QueueItem, error) {
	var it QueueItem
	err := c.do(ctx, http.MethodGet, "/v1/queue/"+url.PathEscape(id), nil, &it)
	return it, err
}

// QueueRetry retries one message now.
func (c *Client) QueueRetry(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/v1/queue/"+url.PathEscape(id)+"/retry", nil, nil)
}

// QueueDelete removes a message from the queue.
func (c *Client) QueueDelete(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/queue/"+url.PathEscape(id), nil, nil)
}

// QueueFlush retries every queued message now.
func (c *Client) QueueFlush(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/queue/flush", nil, nil)
}

// Reload makes the server re-read its configuration; a bad config comes
// back as an *APIError carrying the config errors (O5).
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/reload", nil, nil)
}

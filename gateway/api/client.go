package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chatgate/chatgate/gateway/protocol"
)

// Client calls the server API: `chatgate api` and chatbench use it, and
// so can an application's backend written in Go. It is safe for
// concurrent use.
type Client struct {
	base string // the API's base URL, without a trailing slash
	key  string // the bearer credential: an API key or a JWT
	hc   *http.Client
}

// NewClient returns a client of the API at baseURL (http://host:port)
// that authenticates with key. hc nil means a client with a 30 s timeout.
func NewClient(baseURL, key string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api url %q: want http(s)://host:port", baseURL)
	}
	if key == "" {
		return nil, fmt.Errorf("no api key")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), key: key, hc: hc}, nil
}

// Publish publishes one system message.
func (c *Client) Publish(ctx context.Context, p PublishRequest) (PublishResult, error) {
	var out PublishResult
	return out, c.do(ctx, http.MethodPost, "/v1/publish", p, &out)
}

// PublishBatch publishes several messages in one request; each has its
// own result.
func (c *Client) PublishBatch(ctx context.Context, msgs []PublishRequest) (BatchResponse, error) {
	var out BatchResponse
	return out, c.do(ctx, http.MethodPost, "/v1/publish/batch", BatchRequest{Messages: msgs}, &out)
}

// Disconnect closes a user's connections (or one), optionally banning the
// user from a room first.
func (c *Client) Disconnect(ctx context.Context, d DisconnectRequest) (DisconnectResponse, error) {
	var out DisconnectResponse
	return out, c.do(ctx, http.MethodPost, "/v1/disconnect", d, &out)
}

// Ban keeps a user out of a room for b.Seconds.
func (c *Client) Ban(ctx context.Context, b BanRequest) (BanResult, error) {
	var out BanResult
	return out, c.do(ctx, http.MethodPost, "/v1/ban", b, &out)
}

// Unban lifts a ban.
func (c *Client) Unban(ctx context.Context, u UnbanRequest) error {
	var out UnbanRequest
	return c.do(ctx, http.MethodPost, "/v1/unban", u, &out)
}

// Rooms lists active rooms after after (""), at most limit (0: the
// server's default).
func (c *Client) Rooms(ctx context.Context, after string, limit int) (RoomsResponse, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out RoomsResponse
	return out, c.do(ctx, http.MethodGet, "/v1/rooms"+encode(q), nil, &out)
}

// Presence says who is in room.
func (c *Client) Presence(ctx context.Context, room string) (PresenceResponse, error) {
	var out PresenceResponse
	return out, c.do(ctx, http.MethodGet, "/v1/rooms/"+url.PathEscape(room)+"/presence", nil, &out)
}

// History reads room's held messages: after since when not nil, at most
// limit (0: the server's default).
func (c *Client) History(ctx context.Context, room string, since *uint64, limit int) (HistoryResponse, error) {
	q := url.Values{}
	if since != nil {
		q.Set("since", strconv.FormatUint(*since, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out HistoryResponse
	return out, c.do(ctx, http.MethodGet, "/v1/rooms/"+url.PathEscape(room)+"/history"+encode(q), nil, &out)
}

func encode(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// do sends one request and decodes the answer into out, or returns the
// API's *Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error *Error `json:"error"`
		}
		if json.Unmarshal(data, &eb) != nil || eb.Error == nil {
			// Not the API's answer (a proxy's, say): keep what it said.
			return &Error{Code: protocol.ErrorCode("http_" + strconv.Itoa(resp.StatusCode)), Message: strings.TrimSpace(string(data)), Status: resp.StatusCode}
		}
		eb.Error.Status = resp.StatusCode
		return eb.Error
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not what the API sends: %w", method, path, err)
	}
	return nil
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/chatgate/chatgate/gateway/api"
)

// Sending through the server API (--via api): each sender's schedule
// publishes its messages as system messages with POST /v1/publish instead
// of writing send envelopes on its WebSocket. The API's answer (the seq) is
// the ack; the members, the senders among them, receive and check the
// messages as always, so the latency is from the intended send time,
// through the API and the broker, to each member's socket:
// backend-originated fan-out.

// newAPIClient builds the client of --api-url with the key of
// --api-key-file, with enough keep-alive connections for every sender.
func newAPIClient(cfg *Config) (*api.Client, error) {
	b, err := os.ReadFile(cfg.APIKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--api-key-file: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return nil, fmt.Errorf("--api-key-file %s is empty", cfg.APIKeyFile)
	}
	senders := max(cfg.Senders*cfg.Rooms, 1)
	hc := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConns: senders, MaxIdleConnsPerHost: senders, IdleConnTimeout: time.Minute},
	}
	return api.NewClient(cfg.APIURL, key, hc)
}

// publishVia sends one message of sender m through the API and accounts
// for it as the WebSocket path does: sent, then acked (its seq joins the
// ledger) or rejected (the API's error) or unconfirmed (no answer).
func (m *member) publishVia(ctx context.Context, room string, text []byte) {
	e := m.e
	m.nSent.Add(1)
	e.sent.Add(1)
	res, err := e.api.Publish(ctx, api.PublishRequest{Room: room, Text: string(text), Sender: m.name})
	var apiErr *api.Error
	switch {
	case err == nil:
		e.ledger.add(streamKey{m.room, -1}, res.Seq)
		e.acked.Add(1)
		m.nAcked.Add(1)
	case errors.As(err, &apiErr):
		e.errorCodes.add(string(apiErr.Code), 1)
		e.rejected.Add(1)
		m.nReject.Add(1)
	default:
		e.writeFailed.Add(1)
		e.errs.add("api_"+errKind(err, 0), 1)
	}
}

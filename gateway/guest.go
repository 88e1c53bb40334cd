package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/chatgate/chatgate/gateway/auth"
	"github.com/chatgate/chatgate/gateway/observe"
	"github.com/chatgate/chatgate/gateway/protocol"
)

// Guest identities (--auth none): every anonymous connection gets a guest
// credential in welcome (auth.Guests); a connection that offers a valid one
// as the subprotocol "guest.<credential>" is that guest again. A bad,
// expired or foreign credential never refuses the handshake (a browser
// would only see 1006): the connection is a new guest, counted by outcome
// and logged at debug.

// guestState is the Server's part of guest identities.
type guestState struct {
	// static after construction
	issuer *auth.Guests          // nil: no guest credentials (--auth jwt, or --guest-ttl 0)
	obs    observe.GuestObserver // nil when the Observer does not count them
	stop   context.CancelFunc    // ends the key-file watcher
	done   chan struct{}         // closed when the watcher has returned
}

// startGuests sets up guest credentials for cfg, with their key file
// watched until stopGuests. o is the caller's Observer.
func (s *Server) startGuests(o observe.Observer) error {
	if s.cfg.Auth == "jwt" || s.cfg.GuestTTL <= 0 {
		return nil
	}
	g, err := auth.NewGuests(auth.GuestConfig{KeyFile: s.cfg.GuestKeyFile, TTL: s.cfg.GuestTTL}, s.log)
	if err != nil {
		return err
	}
	s.guests.issuer = g
	s.guests.obs, _ = o.(observe.GuestObserver)
	if s.cfg.GuestKeyFile == "" {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.guests.stop, s.guests.done = cancel, make(chan struct{})
	go func() {
		defer close(s.guests.done)
		if err := g.Watch(ctx); err != nil {
			s.log.Error("cannot watch the guest key file; rotation needs a restart", "file", s.cfg.GuestKeyFile, "err", err)
		}
	}()
	return nil
}

func (s *Server) stopGuests() {
	if s.guests.stop != nil {
		s.guests.stop()
		<-s.guests.done
	}
}

// guestUser is the user of an anonymous connection whose new ids are id:
// the guest its credential names, or a new guest. The name is the one the
// connection asks for (?name=) when it is valid, so a guest who renames
// keeps its id; otherwise the credential's name, or a generated one.
func (s *Server) guestUser(r *http.Request, id string) protocol.User {
	asked, named := protocol.ValidName(r.URL.Query().Get("name"))
	fresh := protocol.User{ID: "u_" + id, Name: displayName(asked, id)}
	if s.guests.issuer == nil {
		return fresh
	}
	cred := auth.GuestCredentialFromRequest(r)
	if cred == "" {
		s.guestOutcome(observe.GuestNew)
		return fresh
	}
	g, err := s.guests.issuer.Verify(cred, time.Now())
	if err != nil {
		outcome := observe.GuestInvalid
		switch {
		case errors.Is(err, auth.ErrGuestExpired):
			outcome = observe.GuestExpired
		case errors.Is(err, auth.ErrGuestUnknownKey):
			outcome = observe.GuestUnknownKey
		}
		// The cause names what failed, never the credential.
		s.log.Debug("guest credential refused; a new guest", "outcome", string(outcome), "cause", err.Error(), "user", fresh.ID)
		s.guestOutcome(outcome)
		return fresh
	}
	s.guestOutcome(observe.GuestResumed)
	u := protocol.User{ID: g.UserID, Name: asked}
	if !named {
		u.Name = displayName(g.Name, strings.TrimPrefix(g.UserID, "u_"))
	}
	return u
}

func (s *Server) guestOutcome(o observe.GuestOutcome) {
	s.activity.guest(o)
	if s.guests.obs != nil {
		s.guests.obs.GuestSession(o)
	}
}

// welcome encodes the connection's welcome with limits: the features the
// gateway relays and, for a guest, a fresh credential for who it is now.
func (c *client) welcome(limits protocol.Limits) []byte {
	s := c.srv
	var x protocol.WelcomeExtras
	if s.cfg.Typing {
		x.Features = []string{protocol.FeatureTyping}
	}
	if g := s.guests.issuer; g != nil && c.peer.ident == nil {
		x.Guest = &protocol.GuestGrant{Credential: g.Issue(c.user.ID, c.user.Name, time.Now())}
	}
	return protocol.WelcomeWith(c.id, c.user, s.cfg.NodeID, limits, x)
}

// resumable reports whether the connection's user can come back as the
// same user: with a token, or as a guest with a credential.
func (c *client) resumable() bool { return c.peer.ident != nil || c.srv.guests.issuer != nil }

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/internal/ctxsleep"
)

// RunOptions configure Run beyond the Server itself.
type RunOptions struct {
	// AdminRoutes, if set, adds routes (such as /metrics) to the admin mux.
	AdminRoutes func(*http.ServeMux)
	// Listening, if set, is called once both listeners are bound.
	Listening func(chat, admin net.Addr)
	// API, if set, is served on a listener of its own (the server API,
	// gateway/api) with the same HTTP timeouts as the others. It stops
	// taking requests when the chat listener stops accepting, and the
	// requests under way finish before the shutdown hooks close the broker.
	API *APIListener
	// OnShutdown hooks run after every connection is closed and the drain
	// span has ended (close the broker, flush trace exporters here), before
	// the admin listener's final linger. Together they get five seconds,
	// even when the drain used up the shutdown timeout.
	OnShutdown []func(context.Context) error
}

// APIListener is the server API's address and handler.
type APIListener struct {
	Addr    string
	Handler http.Handler
}

// Run serves cfg until ctx is cancelled, then drains in order: readiness
// fails at once and keep-alive HTTP connections are closed once idle;
// serving continues for DrainDelay; the chat listener stops accepting and
// every plain HTTP connection still open on it is cut, whatever it is doing
// (a client trickling a request must not hold up the drain); WebSocket
// clients are closed with 1001 spread over DrainWindow (the HTTP server does
// not track hijacked connections, so the Server does it); whatever is left
// at ShutdownTimeout (counted from the signal) is force-closed; one "drain
// summary" line is logged; the shutdown hooks run; the admin listener keeps
// serving (/metrics with the drain's final counts) for DrainLinger after the
// last connection ended, but not past ShutdownTimeout, and is closed last.
// With a shared broker (Options.SharedBroker), the memberships that linger
// for --presence-grace are kept until their grace ends (within the shutdown
// timeout) before the drain summary and the hooks. While serving, one
// "activity" line is logged at info every minute (activity.go). It returns
// nil after a clean drain and ErrDrainTimeout if connections had to be
// forced.
func Run(ctx context.Context, srv *Server, opts RunOptions) error {
	cfg := srv.cfg
	log := srv.log
	defer srv.Close()
	chatLn, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("chat listener: %w", err)
	}
	var adminLn, apiLn net.Listener
	if cfg.AdminAddr != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			chatLn.Close()
			return fmt.Errorf("admin listener: %w", err)
		}
	}
	if opts.API != nil {
		if apiLn, err = net.Listen("tcp", opts.API.Addr); err != nil {
			chatLn.Close()
			if adminLn != nil {
				adminLn.Close()
			}
			return fmt.Errorf("api listener: %w", err)
		}
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	// Both listeners bound how long a request may take to arrive, its
	// response to be written, and a keep-alive connection to idle; the
	// chat listener also caps connections per address at accept.
	httpServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ReadTimeout:       cfg.HTTPReadTimeout,
			WriteTimeout:      cfg.HTTPWriteTimeout,
			IdleTimeout:       cfg.HTTPIdleTimeout,
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			ErrorLog:          errLog,
		}
	}
	chatHTTP := httpServer(srv)
	serveErr := make(chan error, 3)
	go func() { serveErr <- chatHTTP.Serve(newTCPLimitListener(chatLn, &cfg, srv.obs)) }()

	var adminHTTP *http.Server
	if adminLn != nil {
		mux := srv.AdminHandler()
		if opts.AdminRoutes != nil {
			opts.AdminRoutes(mux)
		}
		adminHTTP = httpServer(mux)
		go func() { serveErr <- adminHTTP.Serve(adminLn) }()
	}
	var apiHTTP *http.Server
	var apiAddr net.Addr
	if apiLn != nil {
		apiHTTP = httpServer(opts.API.Handler)
		apiAddr = apiLn.Addr()
		go func() { serveErr <- apiHTTP.Serve(apiLn) }()
	}
	var adminAddr net.Addr
	if adminLn != nil {
		adminAddr = adminLn.Addr()
	}
	log.Info("listening", "addr", chatLn.Addr().String(), "admin_addr", addrString(adminAddr), "api_addr", addrString(apiAddr), "node", cfg.NodeID)
	// Ready from here: the listeners are bound (and serving). Before the
	// Listening callback, so whoever it tells finds /readyz answering 200.
	srv.SetReady(true)
	if opts.Listening != nil {
		opts.Listening(chatLn.Addr(), adminAddr)
	}
	defer srv.startActivityLog()()

	var failure error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		failure = fmt.Errorf("listener failed: %w", err)
		log.Error("listener failed; draining", "err", err)
	}

	// The drain. Everything below is bounded by the shutdown timeout.
	hard, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	_, span := srv.tracer.Start(context.Background(), "chatgate.drain")
	drainStart := time.Now()
	srv.BeginDrain()
	chatHTTP.SetKeepAlivesEnabled(false) // idle page-load connections go now
	conns := srv.Conns()
	span.AddEvent("readiness failing", trace.WithAttributes(attribute.Int("chatgate.connections", conns)))
	log.Info("draining: readiness failing", "conns", conns, "drain_delay", cfg.DrainDelay.String(), "drain_window", cfg.DrainWindow.String())
	ctxsleep.Sleep(hard, cfg.DrainDelay)

	log.Info("draining: no longer accepting connections")
	// Close, not Shutdown: Shutdown would wait for every plain HTTP
	// connection to go idle, and one client trickling a request could hold
	// the WebSocket drain until the hard deadline. Hijacked (WebSocket)
	// connections are not the HTTP server's and are left alone.
	_ = chatHTTP.Close()
	// The server API stops taking requests too; those under way finish
	// (within --api-timeout) while the clients are closed.
	apiDone := make(chan struct{})
	go func() {
		defer close(apiDone)
		if apiHTTP != nil {
			_ = apiHTTP.Shutdown(hard)
			_ = apiHTTP.Close()
		}
	}()
	span.AddEvent("stopped accepting; closing clients", trace.WithAttributes(attribute.Int("chatgate.connections", srv.Conns())))
	srv.CloseClients(hard, cfg.DrainWindow)
	clean := true
	if err := srv.Wait(hard); err != nil {
		left := srv.Conns()
		log.Warn("drain overran the shutdown timeout; force-closing", "conns", left)
		span.AddEvent("force-closing", trace.WithAttributes(attribute.Int("chatgate.connections", left)))
		span.SetStatus(codes.Error, "drain overran the shutdown timeout")
		srv.ForceClose()
		failure = errors.Join(failure, ErrDrainTimeout)
		clean = false
	} else {
		span.AddEvent("all connections closed")
		log.Info("draining: all connections closed")
	}
	<-apiDone
	srv.endLingering(hard)
	lastClosed := time.Now()
	span.End()
	log.Info("drain summary", "duration_ms", lastClosed.Sub(drainStart).Milliseconds(), "clients", conns,
		slog.Group("closed", srv.drain.closedAttrs()...), "messages_flushed", srv.drain.flushed.Load(), "clean", clean)

	// The hooks get time of their own: after an overrun drain the hard
	// deadline has passed, and the drain span must still be flushed.
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), hookTimeout)
	defer cancelFlush()
	for _, f := range opts.OnShutdown {
		if err := f(flushCtx); err != nil {
			log.Warn("shutdown hook failed", "err", err)
		}
	}
	if adminHTTP != nil {
		// The final linger: a scrape now sees the drain's final counts.
		if linger := time.Until(lastClosed.Add(cfg.DrainLinger)); linger > 0 && hard.Err() == nil {
			log.Info("draining: admin listener lingers for a final scrape", "linger", linger.Round(time.Millisecond).String())
			ctxsleep.Sleep(hard, linger)
		}
		closeCtx, cancelClose := context.WithTimeout(context.Background(), time.Second)
		_ = adminHTTP.Shutdown(closeCtx)
		cancelClose()
	}
	return failure
}

// hookTimeout bounds the shutdown hooks (exporter flushes) together.
const hookTimeout = 5 * time.Second

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

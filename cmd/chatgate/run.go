package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/api"
	"github.com/chatgate/chatgate/gateway/broker"
	"github.com/chatgate/chatgate/gateway/cluster"
	"github.com/chatgate/chatgate/gateway/hub"
	"github.com/chatgate/chatgate/internal/appconfig"
	"github.com/chatgate/chatgate/internal/cli"
	"github.com/chatgate/chatgate/internal/logging"
	"github.com/chatgate/chatgate/metrics"
	"github.com/chatgate/chatgate/telemetry"
	"github.com/chatgate/chatgate/web"
)

// Set with -ldflags "-X main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = ""
)

func buildRevision() string {
	if revision != "" {
		return revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// parseConfig reads flags, then CHATGATE_* variables for flags not given,
// and validates the result.
func parseConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (appconfig.Config, error) {
	cfg := appconfig.Default()
	fs := flag.NewFlagSet("chatgate", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := cli.Parse(fs, args, func() { usage(fs, out) }); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *showVersion {
		fmt.Fprintf(out, "chatgate %s (%s)\n", version, buildRevision())
		return cfg, flag.ErrHelp
	}
	if err := appconfig.ApplyEnv(fs, lookupEnv); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprint(out, `Usage: chatgate [flags]

chatgate is a WebSocket chat gateway. With no flags it serves the chat page and
/ws on :8080 and /livez, /readyz and /metrics on :9090, with an in-process hub.

Every flag can also be set from the environment: --send-rate from
CHATGATE_SEND_RATE, and so on. A flag on the command line wins. Secrets
are read from files (--jwt-secret-file), never from flag values.

Run "chatgate token --help" to mint a development token for --auth jwt,
and "chatgate api --help" to call the server API (--api-addr, docs/api.md).

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		name, help := flag.UnquoteUsage(f)
		fmt.Fprintf(out, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(out, " %s", name)
		}
		fmt.Fprintf(out, "\n      %s", help)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "[]" {
			fmt.Fprintf(out, " (default %s)", f.DefValue)
		}
		if f.Name != "version" {
			fmt.Fprintf(out, " [$%s]", appconfig.EnvName(f.Name))
		}
		fmt.Fprintln(out)
	})
}

// run starts the gateway and blocks until ctx is cancelled and the drain is
// over.
func run(ctx context.Context, cfg appconfig.Config, logOut io.Writer) error {
	log := logging.New(cfg.Log, logOut)
	log.Info("starting chatgate", "version", version, "revision", buildRevision(), "gogc", setGCPercent(os.Getenv),
		"gomaxprocs", setMaxProcs(os.Getenv, cfg.Gateway.Netpoll && runtime.GOOS == "linux"))

	reg := prometheus.NewRegistry()
	var srv *gateway.Server // set below, before the admin listener serves
	m := metrics.New(reg, metrics.BuildInfo{Version: version, Revision: buildRevision()}, func() float64 {
		return float64(srv.MaxQueueBytes())
	})
	tracing, err := telemetry.Setup(ctx, version, os.Getenv, log)
	if err != nil {
		return err
	}
	log.Info("tracing", "exporter", tracing.Exporter)
	// The broker is closed once every connection is gone (first shutdown
	// hook, so its spans are still flushed), or on the way out if the
	// gateway never got that far.
	b, err := newBroker(cfg, log, m, reg, tracing.Provider)
	if err != nil {
		_ = tracing.Shutdown(context.Background())
		return err
	}
	defer b.close(context.Background())
	srv, err = gateway.New(cfg.Gateway, gateway.Options{
		Logger: log, Observer: m, Web: web.Handler(), Tracer: tracing.Provider,
		Broker: b.Broker, History: cfg.Rooms.History, Ready: b.ready,
		// The backplane serves the other replicas too (see Options.SharedBroker).
		SharedBroker: cfg.Cluster.Backplane != "",
	})
	if err != nil {
		_ = tracing.Shutdown(context.Background())
		return err
	}
	m.SetQueueTotal(func() float64 { return float64(srv.QueuedBytes()) })
	apiL, apiH, err := newAPI(cfg, b.Broker, log, m, tracing.Provider)
	if err != nil {
		srv.Close()
		_ = tracing.Shutdown(context.Background())
		return err
	}
	hooks := []func(context.Context) error{b.close, tracing.Shutdown}
	if apiH != nil {
		// Its requests are over by the hooks; stop watching its keys.
		hooks = append([]func(context.Context) error{func(context.Context) error { apiH.Close(); return nil }}, hooks...)
	}
	return gateway.Run(ctx, srv, gateway.RunOptions{
		AdminRoutes: func(mux *http.ServeMux) { mux.Handle("GET /metrics", metrics.Handler(reg)) },
		API:         apiL,
		OnShutdown:  hooks,
	})
}

// newAPI builds the server API's listener when --api-addr is set.
func newAPI(cfg appconfig.Config, b broker.Broker, log *slog.Logger, m *metrics.Metrics, tp trace.TracerProvider) (*gateway.APIListener, *api.Handler, error) {
	if !cfg.API.Enabled() {
		return nil, nil, nil
	}
	op, ok := b.(broker.Operator)
	if !ok {
		return nil, nil, fmt.Errorf("--api-addr: the %T broker does not serve the server API", b)
	}
	deps := cfg.APIDeps()
	deps.Broker, deps.Logger, deps.Observer, deps.Metrics, deps.Tracer = op, log, m, m, tp
	h, err := api.New(cfg.API, deps)
	if err != nil {
		return nil, nil, err
	}
	return &gateway.APIListener{Addr: cfg.API.Addr, Handler: h}, h, nil
}

// builtBroker is the broker run serves with: its readiness (nil: always
// ready) and how to close it (idempotent).
type builtBroker struct {
	broker.Broker
	ready func() error
	close func(context.Context) error
}

// newBroker builds the broker cfg asks for: the in-process hub, or in
// cluster mode (--backplane) the NATS JetStream backplane, whose metrics go
// to reg.
func newBroker(cfg appconfig.Config, log *slog.Logger, obs *metrics.Metrics, reg prometheus.Registerer, tp trace.TracerProvider) (builtBroker, error) {
	if cfg.Cluster.Backplane == "" {
		hcfg := hub.Config{RoomTTL: cfg.Hub.RoomTTL, Observer: obs}
		hcfg.SetRooms(cfg.Rooms)
		h := hub.New(hcfg)
		return builtBroker{Broker: h, close: func(context.Context) error { h.Close(); return nil }}, nil
	}
	bcfg := cfg.Cluster.Config(cfg.Gateway.NodeID, cfg.Rooms)
	bcfg.Observer, bcfg.Logger, bcfg.Registry, bcfg.Tracer = obs, log, reg, tp
	bp, err := cluster.New(bcfg)
	if err != nil {
		return builtBroker{}, err
	}
	log.Info("cluster mode", "backplane", redactURLs(cfg.Cluster.Backplane), "replica", bp.ID(), "stream_storage", cfg.Cluster.StreamStorage, "stream_replicas", cfg.Cluster.StreamReplicas)
	return builtBroker{Broker: bp, ready: bp.Health, close: func(context.Context) error { return bp.Close() }}, nil
}

// redactURLs drops any user:password from NATS URLs for the log.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// defaultGCPercent is chatgate's GOGC unless the GOGC variable sets one.
// A connection is mostly long-lived heap (about 2.4 KiB with the event
// loop), and the Go runtime lets the heap grow by GOGC percent of what is
// live before collecting; at Go's default of 100 an idle gateway's memory
// is twice its connections'. 50 keeps it to one and a half, for a little
// more collection work; the delivery path allocates almost nothing, so
// that work is small. docs/operations.md explains how to change it.
const defaultGCPercent = 50

// minEventLoopProcs is the fewest processors (GOMAXPROCS) chatgate runs
// the event loop with unless the GOMAXPROCS variable is set. The loop's
// pollers wait in epoll_wait outside the Go scheduler; with one processor,
// a poller woken by a readable socket waits for the flusher writing to
// thousands of sockets to be preempted (up to 10 ms each time), and so does
// the reader it starts: measured on one CPU with 10,000 connections in 100
// rooms, broadcast latency fell from a 40 ms mean to under 3 ms with two
// processors, for the same CPU per delivery. The operating system then
// shares the CPU between the two threads; docs/operations.md says more.
const minEventLoopProcs = 2

// setMaxProcs raises GOMAXPROCS to minEventLoopProcs when the event loop
// serves the connections and the GOMAXPROCS variable is not set (the
// runtime reads it itself), and returns the GOMAXPROCS in effect.
func setMaxProcs(getenv func(string) string, eventLoop bool) int {
	if n := runtime.GOMAXPROCS(0); !eventLoop || getenv("GOMAXPROCS") != "" || n >= minEventLoopProcs {
		return n
	}
	runtime.GOMAXPROCS(minEventLoopProcs)
	return minEventLoopProcs
}

// setGCPercent applies defaultGCPercent unless GOGC is set (the runtime
// reads GOGC itself), and returns the GOGC in effect.
func setGCPercent(getenv func(string) string) string {
	if v := getenv("GOGC"); v != "" {
		return v
	}
	debug.SetGCPercent(defaultGCPercent)
	return strconv.Itoa(defaultGCPercent)
}

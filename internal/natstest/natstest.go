// Package natstest runs a real nats-server with JetStream inside a test
// process, on a loopback port, for tests of the cluster backplane: the
// cluster package's own tests, the Prometheus end-to-end test and the
// Kubernetes entrypoint test.
package natstest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startTimeout bounds the wait for the server to accept connections.
const startTimeout = 15 * time.Second

// Server is an embedded JetStream-enabled nats-server. Stop and Restart
// keep its port and store, so a restart looks to clients like an outage
// and a recovery with nothing stored lost.
type Server struct {
	// static after Start
	t    testing.TB
	name string
	dir  string
	port int // chosen by the first start, reused by restarts

	srv *server.Server // nil while stopped
}

// Start runs a server named name on a random loopback port with its store
// in a temporary directory. It is stopped, and its goroutines are gone (for
// goleak), when the test ends.
func Start(t testing.TB, name string) *Server {
	t.Helper()
	s := &Server{t: t, name: name, dir: t.TempDir(), port: -1}
	s.start()
	s.port = s.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: s.name,
		Host:       "127.0.0.1",
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.dir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		s.t.Fatalf("nats server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(startTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		s.t.Fatal("nats server did not start")
	}
	s.srv = srv
}

// URL is the server's client URL; it stays the same across restarts.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Stop shuts the server down and waits for its goroutines to end. Stopping
// a stopped server does nothing.
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Restart stops the server if it runs and starts it again on the same port
// and store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// RestartWiped stops the server if it runs, deletes its store (every
// stream and message, as a lost volume would) and starts it again on the
// same port.
func (s *Server) RestartWiped() {
	s.t.Helper()
	s.Stop()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.t.Fatalf("reading the store: %v", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			s.t.Fatalf("wiping the store: %v", err)
		}
	}
	s.start()
}

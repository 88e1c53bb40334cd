package gateway

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatgate/chatgate/metrics"
)

// Every cause of not being ready shows the same in /readyz and in
// chatgate_ready, because both read Readiness: starting, the broker down
// (and back), and draining, which wins over everything.
func TestReadinessOneSourceOfTruth(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, metrics.BuildInfo{Version: "test"}, nil)
	var brokerErr atomic.Pointer[error]
	broker := func() error {
		if p := brokerErr.Load(); p != nil {
			return *p
		}
		return nil
	}
	srv, err := New(testConfig(), Options{Observer: m, Ready: broker, Broker: testHub(t, 0), Logger: slog.New(slog.NewTextHandler(tlogWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	admin := srv.AdminHandler()
	setBroker := func(e error) {
		if e == nil {
			brokerErr.Store(nil)
			return
		}
		brokerErr.Store(&e)
	}

	steps := []struct {
		name   string
		do     func()
		code   int
		body   string
		gauge  float64
		reason error
	}{
		{"starting", func() {}, 503, "starting", 0, ErrStarting},
		{"started", func() { srv.SetReady(true) }, 200, "ok", 1, nil},
		{"backplane down", func() { setBroker(errors.New("backplane down")) }, 503, "backplane down", 0, nil},
		{"backplane not responding", func() { setBroker(errors.New("backplane not responding")) }, 503, "backplane not responding", 0, nil},
		{"backplane back", func() { setBroker(nil) }, 200, "ok", 1, nil},
		{"draining", srv.BeginDrain, 503, "draining", 0, ErrDraining},
		{"draining with the backplane down", func() { setBroker(errors.New("backplane down")) }, 503, "draining", 0, ErrDraining},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			rec := httptest.NewRecorder()
			admin.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if body := strings.TrimSpace(rec.Body.String()); rec.Code != st.code || body != st.body {
				t.Fatalf("/readyz %d %q; want %d %q", rec.Code, body, st.code, st.body)
			}
			if got := readGauge(t, reg, "chatgate_ready"); got != st.gauge {
				t.Fatalf("chatgate_ready = %v while /readyz answers %d %q", got, rec.Code, st.body)
			}
			if st.reason != nil && !errors.Is(srv.Readiness(), st.reason) {
				t.Fatalf("Readiness() = %v; want %v", srv.Readiness(), st.reason)
			}
		})
	}
}

func readGauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

package bench

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/gateway/hub"
)

// drainConfig is a small drain run against urls.
func drainConfig(urls ...string) Config {
	cfg := testConfig(urls[0])
	cfg.URLs = urls
	cfg.Scenario = ScenarioDrain
	cfg.Conns, cfg.Rooms, cfg.Senders, cfg.Rate = 12, 2, 1, 20
	cfg.Duration, cfg.Settle = 2*time.Second, 3*time.Second
	cfg.MaxLoss = LossLimit{Given: true}
	return cfg
}

// sharedHub starts two gateways that share an in-process hub keeping
// history messages per room; their drains hint retries within retryMax.
func sharedHub(t *testing.T, history int, retryMax time.Duration) (a *gateway.Server, urlA, urlB string) {
	t.Helper()
	h := hub.New(hub.Config{History: history, PresenceInterval: 50 * time.Millisecond})
	t.Cleanup(h.Close)
	gcfg := gatewayConfig()
	gcfg.DrainRetryMax = retryMax
	a, urlA = startGateway(t, gcfg, gateway.Options{Broker: h})
	_, urlB = startGateway(t, gcfg, gateway.Options{Broker: h})
	return a, urlA, urlB
}

// TestDrainSingleURL drains the only gateway: the members it closes have
// nowhere to reconnect. They are counted apart, not as loss, the run says
// why, the members it did not close are checked, and the window is the
// scheduled one.
func TestDrainSingleURL(t *testing.T) {
	gcfg := gatewayConfig()
	gcfg.DrainRetryMax = 200 * time.Millisecond
	a, url := startGateway(t, gcfg, gateway.Options{})
	cfg := drainConfig(url)
	cfg.DrainAt = 500 * time.Millisecond
	var out bytes.Buffer
	res, code := Run(context.Background(), cfg, Options{Stdout: &out, Drain: func(ctx context.Context) error {
		// Close the first few members (one every 200 ms), then stop: the
		// rest stay connected to the drained gateway.
		a.BeginDrain()
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		a.CloseClients(cctx, 2200*time.Millisecond)
		return nil
	}})
	t.Log(out.String())
	c, d := res.Correctness, res.Drain
	closed := res.CloseCodes["1001"]
	if code != ExitOK || !res.Thresholds.Passed {
		t.Fatalf("exit %d, thresholds %+v", code, res.Thresholds)
	}
	if d == nil || closed < 1 || closed >= int64(cfg.Conns) || int64(d.NoReplica) != closed || d.ResumeFailed != d.NoReplica || d.Reconnects != 0 {
		t.Fatalf("drain %+v, closes %v", d, res.CloseCodes)
	}
	if c.ExcludedBy["no_replica"] != closed || int64(c.MembersChecked) != int64(cfg.Conns)-closed || c.Lost != 0 || c.MissingAtEnd != 0 {
		t.Fatalf("correctness %+v", c)
	}
	if res.WindowS != cfg.Duration.Seconds() {
		t.Fatalf("window %vs, want the scheduled %v", res.WindowS, cfg.Duration)
	}
	if !strings.Contains(out.String(), "warning       there was no other replica to reconnect to: --url names one gateway") ||
		!strings.Contains(out.String(), "with no other replica to go to: counted apart, not as loss") {
		t.Fatalf("the summary does not say there was nowhere to go:\n%s", out.String())
	}
}

// TestDrainSettleWaitsForReconnects drains one of two gateways that share
// a hub at the very end of the window: its members reconnect while the
// bench settles, and the settle waits for them instead of counting what
// they had not received yet as lost.
func TestDrainSettleWaitsForReconnects(t *testing.T) {
	a, urlA, urlB := sharedHub(t, 10000, 800*time.Millisecond)
	cfg := drainConfig(urlA, urlB)
	cfg.DrainAt = cfg.Duration - 100*time.Millisecond
	cfg.Report = filepath.Join(t.TempDir(), "drain.html")
	var out bytes.Buffer
	res, code := Run(context.Background(), cfg, Options{Stdout: &out, Drain: func(ctx context.Context) error {
		a.BeginDrain()
		a.CloseClients(ctx, 0)
		return nil
	}})
	t.Log(out.String())
	c, d := res.Correctness, res.Drain
	if code != ExitOK || d == nil || d.Reconnects != 6 || d.ResumeFailed != 0 || c.RecoveredJoins != 6 {
		t.Fatalf("exit %d, drain %+v, correctness %+v", code, d, c)
	}
	if c.MembersChecked != 12 || c.Lost != 0 || c.MissingAtEnd != 0 || c.Duplicated != 0 || c.OutOfOrder != 0 {
		t.Fatalf("correctness %+v", c)
	}
	if res.WindowS != cfg.Duration.Seconds() {
		t.Fatalf("window %vs, want the scheduled %v", res.WindowS, cfg.Duration)
	}
	// The drain is marked when it ran: at its scheduled 1.9 s, or a little
	// later when the machine is busy, but within the window and settle.
	marks, _ := reportMarks(t, cfg.Report)
	var at float64
	if len(marks) != 1 || func() bool { _, err := fmt.Sscanf(marks[0], "drain at %fs", &at); return err != nil }() ||
		at < 1.9 || at >= (cfg.Duration+cfg.Settle).Seconds() {
		t.Fatalf("report marks %q, want the drain at 1.9s or later", marks)
	}
}

// TestDrainFailures: a failing --drain-cmd fails the run (exit 3, saying
// why); real loss fails --max-loss.
func TestDrainFailures(t *testing.T) {
	t.Run("drain command fails", func(t *testing.T) {
		_, url := startGateway(t, gatewayConfig(), gateway.Options{})
		cfg := drainConfig(url)
		cfg.Duration, cfg.DrainAt = time.Second, 200*time.Millisecond
		cfg.DrainCmd = "echo no such gateway; exit 3"
		var out bytes.Buffer
		res, code := Run(context.Background(), cfg, Options{Stdout: &out})
		want := `the drain failed: --drain-cmd "echo no such gateway; exit 3": exit status 3: no such gateway`
		if code != ExitFailed || res.Error != want || !strings.Contains(out.String(), "FAILED        "+want) {
			t.Fatalf("exit %d, error %q; want %q:\n%s", code, res.Error, want, out.String())
		}
	})
	t.Run("real loss", func(t *testing.T) {
		// The gateways share a hub that keeps one message of history: the
		// members that move miss what the sender on the other gateway
		// sent while they were away, and the replay cannot heal it.
		a, urlA, urlB := sharedHub(t, 1, 500*time.Millisecond)
		cfg := drainConfig(urlA, urlB)
		cfg.Rooms, cfg.Senders = 1, 2 // one sender on each gateway
		cfg.DrainAt = 500 * time.Millisecond
		var out bytes.Buffer
		res, code := Run(context.Background(), cfg, Options{Stdout: &out, Drain: func(ctx context.Context) error {
			a.BeginDrain()
			a.CloseClients(ctx, 0)
			return nil
		}})
		if code != ExitThreshold || res.Correctness.Lost == 0 || !strings.Contains(out.String(), "FAIL: max-loss:") {
			t.Fatalf("exit %d, correctness %+v:\n%s", code, res.Correctness, out.String())
		}
	})
}

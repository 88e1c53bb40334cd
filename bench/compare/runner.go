package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chatgate/chatgate/bench"
)

// RaisedLimits are the chatgate flags docs/benchmarks.md raises for a load
// test from a handful of loopback addresses; every other limit keeps its
// production default.
var RaisedLimits = []string{
	"--max-conns-per-ip", "100000",
	"--handshake-rate", "100000", "--handshake-burst", "100000",
	"--send-rate", "100000", "--send-burst", "100000",
}

// chatgateArgs is chatgate's command line on addr (chat) and admin.
func chatgateArgs(addr, admin string) []string {
	args := []string{"--addr", addr, "--admin-addr", admin, "--log-format", "json", "--log-level", "warn"}
	return append(args, RaisedLimits...)
}

// gorillaArgs is the gorilla example's command line.
func gorillaArgs(addr string) []string { return []string{"-addr", addr} }

// RunRecord is one attempt of one run, as compare.json keeps it.
type RunRecord struct {
	Index     int       `json:"index"` // the planned run, from 0
	Attempt   int       `json:"attempt"`
	Scenario  string    `json:"scenario"`
	Server    string    `json:"server"`
	Rep       int       `json:"rep"`
	StartedAt time.Time `json:"started_at"`
	// LoadAvg is /proc/loadavg (1, 5 and 15 minutes) before the run.
	LoadAvg [3]float64 `json:"load_avg_before"`
	// Probe is the machine's CPU over the quiet probe just before the run,
	// with nothing of ours running; Usage is over the run, from the
	// server's start to chatbench's exit.
	Probe Usage  `json:"probe"`
	Usage *Usage `json:"usage,omitempty"`
	// Busy says why the machine was not quiet, before or during the run.
	Busy string `json:"busy,omitempty"`
	// Valid runs count in the summary: completed, and quiet (or busy with
	// --allow-busy, which the report then says).
	Valid     bool     `json:"valid"`
	Error     string   `json:"error,omitempty"`
	ServerCmd []string `json:"server_cmd,omitempty"`
	ServerPID int      `json:"server_pid,omitempty"`
	BenchCmd  []string `json:"bench_cmd,omitempty"`
	BenchExit int      `json:"bench_exit"`
	// Figures are the numbers the summary uses (keys as in the summary).
	Figures map[string]float64 `json:"figures"`
	// Files of the run, relative to the output directory.
	ResultFile  string `json:"result_file,omitempty"`
	ReportFile  string `json:"report_file,omitempty"`
	ServerLog   string `json:"server_log,omitempty"`
	BenchStderr string `json:"bench_stderr,omitempty"`
	// Result is chatbench's whole JSON result.
	Result json.RawMessage `json:"result,omitempty"`
}

// binaries are what the runs execute.
type binaries struct {
	chatgate, gorilla, chatbench string
}

// harness runs the plan.
type harness struct {
	cfg    *Config
	bins   binaries
	out    string // output directory
	snap   *snapshotter
	stderr io.Writer
}

// server is a running server process.
type server struct {
	cmd        *exec.Cmd
	pid        int
	argv       []string
	wsURL      string
	metricsURL string // chatgate only
	exited     chan struct{}
	waitErr    error
	log        *os.File
}

// startServer starts the run's server pinned to the server CPU and waits
// until it serves.
func (h *harness) startServer(ctx context.Context, run *Run, logPath string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &server{wsURL: "ws://" + addr + "/ws", exited: make(chan struct{})}
	var ready func(context.Context) error
	var bin string
	var args []string
	switch run.Server {
	case Chatgate:
		admin, err := freeAddr()
		if err != nil {
			return nil, err
		}
		bin, args = h.bins.chatgate, chatgateArgs(addr, admin)
		s.metricsURL = "http://" + admin + "/metrics"
		ready = func(ctx context.Context) error { return httpOK(ctx, "http://"+admin+"/readyz") }
	case Gorilla:
		bin, args = h.bins.gorilla, gorillaArgs(addr)
		ready = func(ctx context.Context) error { return tcpUp(ctx, addr) }
	default:
		return nil, fmt.Errorf("unknown server %q", run.Server)
	}
	s.argv = append([]string{"taskset", "-c", strconv.Itoa(h.cfg.ServerCPU), bin}, args...)
	if s.log, err = os.Create(logPath); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(s.argv[0], s.argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	// The gorilla example serves home.html from its working directory;
	// nothing the bench asks for, but keep it out of the repository root.
	s.cmd.Dir = h.out
	if err := s.cmd.Start(); err != nil {
		s.log.Close()
		return nil, fmt.Errorf("starting %s: %w", run.Server, err)
	}
	s.pid = s.cmd.Process.Pid // taskset execs the server: same process
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		if err := ready(rctx); err == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			s.log.Close()
			return nil, fmt.Errorf("%s exited at start (%v); see %s", run.Server, s.waitErr, logPath)
		case <-rctx.Done():
			s.stop()
			return nil, fmt.Errorf("%s did not answer within 15s; see %s", run.Server, logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// alive says whether the server is still running.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// stop kills the server: the bench has closed its connections, and
// nothing of a graceful drain is measured.
func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.log.Close()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// readyClient asks a starting server whether it serves; no connection
// outlives the question.
var readyClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := readyClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

func tcpUp(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// runOnce makes one attempt of run: server up, chatbench pinned to its
// CPU, the machine's CPU accounted from the server's start to chatbench's
// exit, server killed.
func (h *harness) runOnce(ctx context.Context, run *Run, attempt int, rec *RunRecord) {
	base := fmt.Sprintf("%02d-%s-%s-rep%d", run.Index+1, run.Scenario.Name, run.Server, run.Rep)
	if attempt > 1 {
		base += "-attempt" + strconv.Itoa(attempt)
	}
	rec.ServerLog = filepath.Join("runs", base+".server.log")
	rec.BenchStderr = filepath.Join("runs", base+".chatbench.stderr")
	rec.ResultFile = filepath.Join("runs", base+".json")
	rec.ReportFile = filepath.Join("runs", base+".html")

	srv, err := h.startServer(ctx, run, filepath.Join(h.out, rec.ServerLog))
	if err != nil {
		rec.Error = err.Error()
		return
	}
	rec.ServerCmd, rec.ServerPID = srv.argv, srv.pid
	stopped := false
	defer func() {
		if !stopped {
			srv.stop()
		}
	}()
	before, err := h.snap.take()
	if err != nil {
		rec.Error = err.Error()
		return
	}
	args := run.BenchArgs(srv.wsURL, srv.pid, srv.metricsURL, filepath.Join(h.out, rec.ReportFile))
	rec.BenchCmd = append([]string{"taskset", "-c", strconv.Itoa(h.cfg.BenchCPU), h.bins.chatbench}, args...)
	stdout, benchCPU, exit, err := h.runBench(ctx, rec.BenchCmd, filepath.Join(h.out, rec.BenchStderr))
	rec.BenchExit = exit
	if err == nil && ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	if err != nil {
		rec.Error = err.Error()
		return
	}
	after, err := h.snap.take()
	if !srv.alive() {
		rec.Error = fmt.Sprintf("the %s server exited during the run (%v); see %s", run.Server, srv.waitErr, rec.ServerLog)
		return
	}
	srv.stop()
	stopped = true
	if err != nil {
		rec.Error = err.Error()
		return
	}
	u := usageBetween(before, after, os.Getpid(), srv.pid, benchCPU)
	rec.Usage = &u
	if why := h.cfg.Quiet.busy(u); why != "" {
		rec.Busy = "during the run: " + why
	}
	if werr := os.WriteFile(filepath.Join(h.out, rec.ResultFile), stdout, 0o644); werr != nil {
		rec.Error = werr.Error()
		return
	}
	var res bench.Result
	if err := json.Unmarshal(stdout, &res); err != nil {
		rec.Error = fmt.Sprintf("chatbench's JSON: %v (exit %d; see %s)", err, exit, rec.BenchStderr)
		return
	}
	rec.Result = json.RawMessage(bytes.TrimSpace(stdout))
	if res.Error != "" {
		rec.Error = "chatbench: " + res.Error
		return
	}
	if exit != bench.ExitOK {
		rec.Error = fmt.Sprintf("chatbench exited with %d; see %s", exit, rec.BenchStderr)
		return
	}
	rec.Figures = extract(run.Scenario, &res)
}

// runBench runs chatbench and returns its stdout, its CPU seconds and its
// exit status. A cancelled ctx interrupts it (SIGINT): it closes its
// connections and still reports.
func (h *harness) runBench(ctx context.Context, argv []string, stderrPath string) (stdout []byte, cpu float64, exit int, err error) {
	errFile, err := os.Create(stderrPath)
	if err != nil {
		return nil, 0, 0, err
	}
	defer errFile.Close()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, errFile
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	runErr := cmd.Run()
	if cmd.ProcessState == nil {
		return nil, 0, 0, fmt.Errorf("starting chatbench: %w", runErr)
	}
	cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	exit = cmd.ProcessState.ExitCode()
	var ee *exec.ExitError
	if runErr != nil && !errors.As(runErr, &ee) {
		return out.Bytes(), cpu, exit, fmt.Errorf("chatbench: %w", runErr)
	}
	if exit == bench.ExitUsage {
		tail, _ := os.ReadFile(stderrPath)
		return out.Bytes(), cpu, exit, fmt.Errorf("chatbench refused its flags (a harness bug): %s", strings.TrimSpace(string(tail)))
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return out.Bytes(), cpu, exit, fmt.Errorf("chatbench was killed by %v", ws.Signal())
	}
	return out.Bytes(), cpu, exit, nil
}

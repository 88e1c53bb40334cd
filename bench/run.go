// Package bench is chatbench: load scenarios for a chatgate gateway (or,
// with the raw protocol, the gorilla examples/chat server), open-loop
// senders whose messages carry their intended send time, latency in HDR
// histograms, per-room seq accounting of lost, duplicated and reordered
// messages, server sampling, and the text, JSON and HTML reports.
//
// cmd/chatbench is a thin main around ParseArgs and Run.
package bench

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// Exit codes of Run.
const (
	ExitOK        = 0
	ExitThreshold = 1 // a --slo-*/--max-*/--min-checked threshold was missed, or the run measured too little to judge it
	ExitUsage     = 2 // bad flags
	ExitFailed    = 3 // the run could not be done
)

// Options are the parts of a run that are not flags.
type Options struct {
	Stdout io.Writer
	Stderr io.Writer
	// TTY says Stderr is a terminal: --progress auto shows the live
	// display only then.
	TTY bool
	// Drain, if set, is what the drain scenario runs at --drain-at
	// instead of --drain-cmd (tests drain an in-process gateway with it).
	Drain func(ctx context.Context) error
}

// Run runs cfg (already validated) and writes its report. It returns the
// result and the process exit code.
func Run(ctx context.Context, cfg Config, opts Options) (*Result, int) {
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	id := cfg.BenchID
	if id == "" {
		id = newBenchID()
	}
	res := &Result{
		Schema:    SchemaVersion,
		BenchID:   id,
		Scenario:  cfg.Scenario,
		Proto:     cfg.Proto,
		Target:    cfg.URLs,
		StartedAt: time.Now().UTC().Truncate(time.Millisecond),
		Params: Params{
			Conns: cfg.Conns, Rooms: cfg.Rooms, SendersPerRoom: cfg.Senders, RatePerSender: cfg.Rate,
			SizeBytes: cfg.Size, DurationS: cfg.Duration.Seconds(), Messages: cfg.Messages,
			ConnectRate: cfg.ConnectRate, SlowShare: cfg.SlowShare, SourceIPs: len(cfg.SourceIPs), Via: cfg.Via,
		},
		CloseCodes: map[string]int64{},
		Errors:     map[string]int64{},
		Timeline:   []TimelinePoint{},
		Events:     []Event{},
		Histogram:  []Bucket{},
		Warnings:   []string{},
	}
	if cfg.Scenario != ScenarioSlow {
		res.Params.SlowShare = 0
	}
	err := preflight(&cfg)
	if err == nil {
		cfg.creds, err = loadCredentials(&cfg, id)
	}
	if err == nil {
		if cfg.Scenario == ScenarioDrain && cfg.DrainCmd == "" && opts.Drain == nil {
			fmt.Fprintf(opts.Stderr, "chatbench: drain the gateway within the next %v; members will reconnect and resume\n", cfg.Duration)
		}
		switch cfg.Scenario {
		case ScenarioConnect:
			err = runConnect(ctx, &cfg, &opts, id, res)
		case ScenarioChurn:
			err = runChurn(ctx, &cfg, &opts, id, res)
		default:
			err = runTraffic(ctx, &cfg, &opts, id, res, nil)
		}
	}
	fixNil(res)
	res.warn(&cfg)
	res.evaluate(&cfg)
	code := ExitOK
	if err != nil {
		res.Error = err.Error()
		code = ExitFailed
		fmt.Fprintf(opts.Stderr, "chatbench: %v\n", err)
	} else if !res.Thresholds.Passed {
		code = ExitThreshold
	}
	if cfg.JSON {
		enc := json.NewEncoder(opts.Stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(res); werr != nil {
			fmt.Fprintf(opts.Stderr, "chatbench: writing JSON: %v\n", werr)
		}
	} else {
		WriteTable(opts.Stdout, res)
	}
	if cfg.Report != "" {
		if werr := writeReportFile(cfg.Report, res); werr != nil {
			fmt.Fprintf(opts.Stderr, "chatbench: writing the report: %v\n", werr)
			if code == ExitOK {
				code = ExitFailed
			}
		}
	}
	return res, code
}

// preflight checks the machine can hold the run.
func preflight(cfg *Config) error {
	conns := cfg.Conns
	if cfg.Scenario == ScenarioChurn {
		conns += churnSlots(cfg)
	}
	if err := checkFDs(conns); err != nil {
		return err
	}
	return checkPorts(conns, len(cfg.SourceIPs))
}

func writeReportFile(path string, res *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteHTML(f, res); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fixNil makes every map of the result an object in JSON, never null.
func fixNil(r *Result) {
	if r.CloseCodes == nil {
		r.CloseCodes = map[string]int64{}
	}
	if r.Errors == nil {
		r.Errors = map[string]int64{}
	}
	if r.Connections.FailuresByStatus == nil {
		r.Connections.FailuresByStatus = map[string]int64{}
	}
	if r.Connections.FailuresByReason == nil {
		r.Connections.FailuresByReason = map[string]int64{}
	}
	if r.Correctness.ExcludedBy == nil {
		r.Correctness.ExcludedBy = map[string]int64{}
	}
	if r.Messages.ErrorCodes == nil {
		r.Messages.ErrorCodes = map[string]int64{}
	}
	if r.Timeline == nil {
		r.Timeline = []TimelinePoint{}
	}
	if r.Events == nil {
		r.Events = []Event{}
	}
	if r.Histogram == nil {
		r.Histogram = []Bucket{}
	}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
}

func newBenchID() string {
	var b [3]byte
	_, _ = crand.Read(b[:])
	return "cb" + hex.EncodeToString(b[:])
}

package bench

import (
	"bytes"
	"errors"
	"flag"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{"defaults", nil, "", func(t *testing.T, c Config) {
			if c.Scenario != ScenarioFanout || c.Proto != ProtoChatgate || c.URLs[0] != "ws://127.0.0.1:8080/ws" {
				t.Fatalf("%+v", c)
			}
		}},
		{"scenario as first argument", []string{"rooms", "--conns", "100", "--rooms", "10", "--senders", "2"}, "", func(t *testing.T, c Config) {
			if c.Scenario != ScenarioRooms || c.Conns != 100 || c.Rooms != 10 || c.Senders != 2 {
				t.Fatalf("%+v", c)
			}
		}},
		{"fanout forces one room", []string{"--rooms", "5"}, "", func(t *testing.T, c Config) {
			if c.Rooms != 1 {
				t.Fatalf("rooms %d", c.Rooms)
			}
		}},
		{"url list and source range", []string{"--url", "ws://127.0.0.1:1/ws, ws://localhost:2/ws", "--source-ips", "127.0.0.1-127.0.0.8"}, "", func(t *testing.T, c Config) {
			if len(c.URLs) != 2 || len(c.SourceIPs) != 8 || !c.SourceIPs[7].Equal(net.ParseIP("127.0.0.8")) {
				t.Fatalf("%v %v", c.URLs, c.SourceIPs)
			}
		}},
		{"thresholds", []string{"--slo-p99", "5ms", "--max-loss", "0.1%", "--max-dup", "0"}, "", func(t *testing.T, c Config) {
			if c.SLOP99 != 5*time.Millisecond || !c.MaxLoss.Given || !c.MaxLoss.IsRatio || c.MaxLoss.Ratio != 0.001 || c.MaxDup != 0 || c.MaxOutOfOrder != -1 {
				t.Fatalf("%+v", c)
			}
		}},
		{"drain defaults its moment", []string{"drain", "--duration", "9s"}, "", func(t *testing.T, c Config) {
			if c.DrainAt != 3*time.Second {
				t.Fatalf("drain at %v", c.DrainAt)
			}
		}},
		{"via api", []string{"rooms", "--conns", "10", "--rooms", "2", "--via", "api", "--api-key-file", "/run/key", "--api-url", "http://localhost:9081"}, "", func(t *testing.T, c Config) {
			if c.Via != ViaAPI || c.APIURL != "http://localhost:9081" || c.APIKeyFile != "/run/key" {
				t.Fatalf("%+v", c)
			}
		}},
		{"via api without a key", []string{"--via", "api"}, "--via api needs --api-key-file", nil},
		{"via api with raw", []string{"--via", "api", "--api-key-file", "k", "--proto", "raw"}, "--via api needs --proto chatgate", nil},
		{"via api to a remote api", []string{"--via", "api", "--api-key-file", "k", "--api-url", "http://10.0.0.9:8081"}, "not a loopback address", nil},
		{"via api, api url not http", []string{"--via", "api", "--api-key-file", "k", "--api-url", "ws://127.0.0.1:8081"}, "want http(s)", nil},
		{"via nonsense", []string{"--via", "carrier-pigeon"}, "--via must be ws or api", nil},
		{"remote refused", []string{"--url", "ws://10.1.2.3:8080/ws"}, "not a loopback address", nil},
		{"remote metrics refused", []string{"--server-metrics", "http://192.168.1.1:9090/metrics"}, "not a loopback address", nil},
		{"remote source refused", []string{"--source-ips", "10.0.0.1"}, "not a loopback address", nil},
		{"unknown scenario", []string{"flood"}, "unknown scenario", nil},
		{"raw size cap", []string{"--proto", "raw", "--size", "1000"}, "512 bytes", nil},
		{"raw drain", []string{"drain", "--proto", "raw"}, "drain needs --proto chatgate", nil},
		{"connect needs a rate", []string{"connect"}, "needs --connect-rate", nil},
		{"too many senders", []string{"--conns", "4", "--senders", "5"}, "--senders 5 is more than the 4 members of a room", nil},
		{"bad loss", []string{"--max-loss", "lots"}, "want a message count", nil},
		{"bad range", []string{"--source-ips", "127.0.0.9-127.0.0.1"}, "rising range", nil},
		{"stray argument", []string{"fanout", "extra"}, "unexpected arguments", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			c, err := ParseArgs(tc.args, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
	var out bytes.Buffer
	if _, err := ParseArgs([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "Exit status") {
		t.Fatalf("help: %v\n%s", err, out.String())
	}
}

// TestFlagErrorsAlone: a bad flag is reported alone, not with the errors
// it would cause in the flags checked against it, and nothing else is
// written (no usage).
func TestFlagErrorsAlone(t *testing.T) {
	cases := []struct {
		args []string
		want string // the whole error
	}{
		{[]string{"--conns", "-3"}, "--conns must be positive, got -3"},
		{[]string{"rooms", "--conns", "0", "--rooms", "5", "--senders", "2"}, "--conns must be positive, got 0"},
		{[]string{"rooms", "--conns", "4", "--rooms", "0"}, "--rooms must be positive, got 0"},
		{[]string{"drain", "--duration", "-1s", "--drain-at", "5s"}, "--duration must be positive and at most 1h0m0s, got -1s"},
		{[]string{"--proto", "raw", "--size", "2000000"}, "--size must be 48-1048576, got 2000000"},
		{[]string{"--conns", "x"}, `--conns: "x" is not a whole number`},
		{[]string{"--bogus"}, "unknown flag --bogus"},
		{[]string{"--min-checked", "-2"}, "--min-checked must be -1 (every member that can be checked) or more, got -2"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			var out bytes.Buffer
			_, err := ParseArgs(tc.args, &out)
			if err == nil || err.Error() != tc.want || out.Len() != 0 {
				t.Fatalf("err %q, want %q; output %q", err, tc.want, out.String())
			}
		})
	}
}

// TestHelp: --help names flags as --flag (as chatgate's does), every flag
// in one group.
func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if _, err := ParseArgs([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	help := out.String()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c := DefaultConfig()
	c.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if n := strings.Count(help, "\n  --"+f.Name+" ") + strings.Count(help, "\n  --"+f.Name+"\n"); n != 1 {
			t.Errorf("--%s shows %d times in the help", f.Name, n)
		}
	})
	if strings.Contains(help, "\n  -conns") || !strings.Contains(help, "\n  --conns int\n") {
		t.Fatalf("help does not name flags as --flag:\n%s", help)
	}
	for _, g := range flagGroups {
		for _, n := range g.names {
			if fs.Lookup(n) == nil {
				t.Errorf("help group %q names --%s, which is not a flag", g.title, n)
			}
		}
	}
}

func TestResourceChecks(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if err := checkFDs(10); err != nil {
		t.Fatal(err)
	}
	err := checkFDs(int(lim.Cur))
	if err == nil || !strings.Contains(err.Error(), "RLIMIT_NOFILE") {
		t.Fatalf("checkFDs at the limit: %v", err)
	}
	ports := ephemeralPorts()
	if err := checkPorts(ports, 1); err != nil {
		t.Fatal(err)
	}
	if err := checkPorts(ports+1, 1); err == nil || !strings.Contains(err.Error(), "--source-ips") {
		t.Fatalf("checkPorts: %v", err)
	}
	if err := checkPorts(ports+1, 2); err != nil {
		t.Fatal(err)
	}
	// Run refuses before connecting anything.
	cfg := testConfig("ws://127.0.0.1:1/ws")
	cfg.Conns = int(lim.Cur)
	res, code := Run(t.Context(), cfg, Options{})
	if code != ExitFailed || !strings.Contains(res.Error, "RLIMIT_NOFILE") || res.Connections.Attempted != 0 {
		t.Fatalf("exit %d: %q", code, res.Error)
	}
}

func TestSampling(t *testing.T) {
	cpu, err := parseProcStat("1234 (my (odd) proc) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0 100 0 0")
	if err != nil || cpu != 4 {
		t.Fatalf("cpu %v %v", cpu, err)
	}
	rss, err := parseVmRSS("Name:\tx\nVmRSS:\t  2048 kB\nThreads: 3\n")
	if err != nil || rss != 2<<20 {
		t.Fatalf("rss %v %v", rss, err)
	}
	cpu, rss, err = readProc(os.Getpid())
	if err != nil || cpu < 0 || rss <= 0 {
		t.Fatalf("readProc self: %v %v %v", cpu, rss, err)
	}
	m, err := parseExposition(strings.NewReader(`# HELP x
# TYPE chatgate_messages_delivered_total counter
chatgate_messages_delivered_total 1.5e+06
chatgate_disconnects_total{reason="slow_consumer"} 4
chatgate_broadcast_latency_seconds_bucket{le="0.001"} 9
process_cpu_seconds_total 12.25
process_resident_memory_bytes 3.3e+07
go_gc_duration_seconds 1
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"chatgate_messages_delivered_total":                  1.5e6,
		`chatgate_disconnects_total{reason="slow_consumer"}`: 4,
		"process_cpu_seconds_total":                          12.25,
		"process_resident_memory_bytes":                      3.3e7,
	}
	if len(m) != len(want) {
		t.Fatalf("%v", m)
	}
	for k, v := range want {
		if m[k] != v {
			t.Fatalf("%s = %v, want %v", k, m[k], v)
		}
	}
	before := serverSample{cpu: 10, rss: 1000, metrics: map[string]float64{"chatgate_messages_delivered_total": 100}}
	conn := serverSample{cpu: 11, rss: 11000}
	start := serverSample{cpu: 11, at: time.Unix(100, 0)}
	end := serverSample{cpu: 13, rss: 12000, at: time.Unix(104, 0), metrics: map[string]float64{"chatgate_messages_delivered_total": 1100, "chatgate_connections": 10}}
	st := serverStats(&sampler{pid: 1}, before, conn, start, end, 0, 10, 1000, false)
	if st.CPUSeconds != 2 || st.CPUCores != 0.5 || st.CPUUsPerDelivery != 2000 || st.MemBytesPerConn != 1000 || st.RSSPeakBytes != 12000 ||
		st.Metrics["chatgate_messages_delivered_total"] != 1000 || st.Metrics["chatgate_connections"] != 10 {
		t.Fatalf("%+v", st)
	}
}

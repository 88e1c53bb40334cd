package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// serverSample is one look at the server process.
type serverSample struct {
	at      time.Time
	cpu     float64 // seconds of user+system CPU; -1 unknown
	rss     int64   // bytes; -1 unknown
	metrics map[string]float64
	errs    []string
}

// sampler reads the server's CPU and RSS from /proc (pid) and its
// chatgate_* series from a Prometheus endpoint (metricsURL).
type sampler struct {
	pid        int
	metricsURL string
	client     *http.Client
}

func newSampler(cfg *Config) *sampler {
	if cfg.ServerPID == 0 && cfg.ServerMetrics == "" {
		return nil
	}
	return &sampler{pid: cfg.ServerPID, metricsURL: cfg.ServerMetrics, client: &http.Client{Timeout: 5 * time.Second}}
}

func (s *sampler) source() string {
	switch {
	case s.pid != 0 && s.metricsURL != "":
		return "pid+metrics"
	case s.pid != 0:
		return "pid"
	}
	return "metrics"
}

func (s *sampler) sample(ctx context.Context) serverSample {
	out := serverSample{at: time.Now(), cpu: -1, rss: -1}
	if s.metricsURL != "" {
		m, err := scrape(ctx, s.client, s.metricsURL)
		if err != nil {
			out.errs = append(out.errs, err.Error())
		} else {
			out.metrics = m
			if v, ok := m["process_cpu_seconds_total"]; ok {
				out.cpu = v
			}
			if v, ok := m["process_resident_memory_bytes"]; ok {
				out.rss = int64(v)
			}
		}
	}
	if s.pid != 0 { // /proc is more precise than the scrape: it wins
		cpu, rss, err := readProc(s.pid)
		if err != nil {
			out.errs = append(out.errs, err.Error())
		} else {
			out.cpu, out.rss = cpu, rss
		}
	}
	return out
}

// readProc reads user+system CPU seconds and RSS of pid.
func readProc(pid int) (cpu float64, rss int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("server pid %d: %w", pid, err)
	}
	cpu, err = parseProcStat(string(stat))
	if err != nil {
		return 0, 0, fmt.Errorf("server pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("server pid %d: %w", pid, err)
	}
	rss, err = parseVmRSS(string(status))
	if err != nil {
		return 0, 0, fmt.Errorf("server pid %d: %w", pid, err)
	}
	return cpu, rss, nil
}

// selfCPU is this process's CPU seconds so far (-1 if unknown).
func selfCPU() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return -1
	}
	cpu, err := parseProcStat(string(b))
	if err != nil {
		return -1
	}
	return cpu
}

// parseProcStat returns utime+stime in seconds from a /proc/PID/stat line.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseProcStat(s string) (float64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat times")
	}
	return float64(ut+st) / clockTicks, nil
}

func parseVmRSS(s string) (int64, error) {
	for _, line := range strings.Split(s, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb * 1024, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// keepSeries says which scraped series a report keeps.
func keepSeries(name string) bool {
	if strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_created") {
		return false
	}
	return strings.HasPrefix(name, "chatgate_") || strings.HasPrefix(name, "process_") || name == "go_goroutines"
}

// scrape fetches a Prometheus text exposition and returns the kept series
// by their full name (with labels).
func scrape(ctx context.Context, c *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: HTTP %d", url, resp.StatusCode)
	}
	return parseExposition(io.LimitReader(resp.Body, 16<<20))
}

// parseExposition reads "name{labels} value [timestamp]" lines.
func parseExposition(r io.Reader) (map[string]float64, error) {
	out := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		series, rest := line, ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, rest = line[:i+1], line[i+1:]
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			series, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		name := series
		if i := strings.IndexByte(series, '{'); i >= 0 {
			name = series[:i]
		}
		if !keepSeries(name) {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[series] = v
	}
	return out, sc.Err()
}

// serverStats turns the samples into the report: before is taken before any
// connection, connected with every connection up, and start/end bracket the
// window; peak is the largest RSS seen.
func serverStats(s *sampler, before, connected, start, end serverSample, peak int64, conns int64, deliveries int64, perConnection bool) *ServerStats {
	st := &ServerStats{Source: s.source(), RSSBeforeBytes: before.rss, RSSConnectedBytes: connected.rss, RSSPeakBytes: max(peak, connected.rss, end.rss)}
	for _, x := range []serverSample{before, connected, start, end} {
		st.Errors = append(st.Errors, x.errs...)
	}
	if start.cpu >= 0 && end.cpu >= 0 {
		st.CPUSeconds = round3(end.cpu - start.cpu)
		if secs := end.at.Sub(start.at).Seconds(); secs > 0 {
			st.CPUCores = round3(st.CPUSeconds / secs)
		}
		if perConnection && conns > 0 {
			st.CPUUsPerConnection = round3(st.CPUSeconds * 1e6 / float64(conns))
		}
		if !perConnection && deliveries > 0 {
			st.CPUUsPerDelivery = round3(st.CPUSeconds * 1e6 / float64(deliveries))
		}
	}
	if before.rss >= 0 && connected.rss >= 0 && conns > 0 {
		if grown := connected.rss - before.rss; grown > 0 {
			st.MemBytesPerConn = float64(int64((float64(grown)/float64(conns))*10)) / 10
		} else {
			st.MemPerConnNoisy = true
		}
	}
	if before.metrics != nil && end.metrics != nil {
		st.Metrics = make(map[string]float64)
		for k, v := range end.metrics {
			name := k
			if i := strings.IndexByte(k, '{'); i >= 0 {
				name = k[:i]
			}
			if !strings.HasPrefix(name, "chatgate_") {
				continue
			}
			if strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_count") || strings.HasSuffix(name, "_sum") {
				v -= before.metrics[k]
				if v == 0 {
					continue
				}
			}
			st.Metrics[k] = round3(v)
		}
	}
	return st
}

func round3(f float64) float64 {
	return math.Round(f*1000) / 1000
}

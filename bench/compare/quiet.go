package compare

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/prometheus/procfs"

	"github.com/chatgate/chatgate/internal/ctxsleep"
)

// pfKthread marks a kernel thread in the flags of /proc/PID/stat
// (PF_KTHREAD, include/linux/sched.h).
const pfKthread = 0x00200000

// QuietRule decides whether the machine was quiet enough for a run to
// count. See docs/benchmarks.md, "Comparing with the gorilla example".
type QuietRule struct {
	// MaxOtherCores is the most CPU, in cores averaged over the run (or
	// the probe before it), that processes other than the server, chatbench
	// and the harness, and other than kernel threads, may use; steal time
	// (CPU the hypervisor gave to another guest) counts against the same
	// limit on its own.
	MaxOtherCores float64 `json:"max_other_cores"`
	// MaxLoad is the highest 1-minute load average at which the suite
	// starts. It is checked once, before the builds: after that the
	// harness's own builds and runs keep the load average up for minutes.
	MaxLoad float64 `json:"max_load"`
}

// busy says why u is not quiet, or "" when it is.
func (q QuietRule) busy(u Usage) string {
	switch {
	case u.OtherCores > q.MaxOtherCores:
		why := fmt.Sprintf("other processes used %.2f cores (limit %.2f)", u.OtherCores, q.MaxOtherCores)
		if u.Busiest != "" {
			why += fmt.Sprintf("; the busiest, %s, %.2f", u.Busiest, u.BusiestCores)
		}
		return why
	case u.StealCores > q.MaxOtherCores:
		return fmt.Sprintf("the hypervisor took %.2f cores (steal; limit %.2f)", u.StealCores, q.MaxOtherCores)
	}
	return ""
}

// busyLoad says why a load average is too high to start, or "".
func (q QuietRule) busyLoad(load1 float64) string {
	if load1 > q.MaxLoad {
		return fmt.Sprintf("the 1-minute load average is %.2f (limit %.2f)", load1, q.MaxLoad)
	}
	return ""
}

// Usage is where the machine's CPU went between two snapshots, in cores
// (CPU seconds over the wall time).
type Usage struct {
	WallS float64 `json:"wall_s"`
	// OursCores are the server's and the harness's with its children
	// (chatbench).
	OursCores float64 `json:"ours_cores"`
	// KernelCores are kernel threads' (ksoftirqd, kworker): under heavy
	// loopback traffic mostly the run's own packet work.
	KernelCores float64 `json:"kernel_cores"`
	// OtherCores is every other process's, including processes that
	// started or ended in between (a compiler, a test binary).
	OtherCores float64 `json:"other_cores"`
	// Busiest names the other process that used the most, and how much.
	Busiest      string  `json:"busiest,omitempty"`
	BusiestCores float64 `json:"busiest_cores,omitempty"`
	// StealCores is CPU the hypervisor gave to other guests (/proc/stat).
	StealCores float64 `json:"steal_cores"`
	// ServerCPUS and BenchCPUS are the server's and chatbench's CPU
	// seconds in between.
	ServerCPUS float64 `json:"server_cpu_s"`
	BenchCPUS  float64 `json:"bench_cpu_s"`
}

// userHZ is the unit of the times in /proc/PID/stat: 100 on every Linux
// architecture Go supports.
const userHZ = 100

// procTimes is one process's CPU, in seconds.
type procTimes struct {
	comm     string
	ppid     int
	start    uint64  // start time since boot, in ticks: tells a reused pid
	cpu      float64 // its own, all threads (utime+stime)
	children float64 // its waited-for children's (cutime+cstime)
	kernel   bool
}

// cpuSnapshot is every process's CPU at one moment. Per-process times are
// exact (the scheduler's runtime); /proc/stat's per-CPU totals are sampled
// at the tick and miss much of a bursty load, so only steal comes from
// there.
type cpuSnapshot struct {
	at    time.Time
	steal float64
	procs map[int]procTimes
}

// snapshotter reads /proc.
type snapshotter struct {
	fs procfs.FS
}

func newSnapshotter() (*snapshotter, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, fmt.Errorf("reading /proc: %w", err)
	}
	return &snapshotter{fs: fs}, nil
}

// take snapshots every process.
func (s *snapshotter) take() (cpuSnapshot, error) {
	snap := cpuSnapshot{at: time.Now(), procs: map[int]procTimes{}}
	st, err := s.fs.Stat()
	if err != nil {
		return snap, fmt.Errorf("reading /proc/stat: %w", err)
	}
	snap.steal = st.CPUTotal.Steal
	procs, err := s.fs.AllProcs()
	if err != nil {
		return snap, fmt.Errorf("listing processes: %w", err)
	}
	for _, p := range procs {
		ps, err := p.Stat()
		if err != nil {
			continue // it ended meanwhile
		}
		snap.procs[p.PID] = procTimes{
			comm:     ps.Comm,
			ppid:     ps.PPID,
			start:    ps.Starttime,
			cpu:      ps.CPUTime(),
			children: float64(ps.CUTime+ps.CSTime) / userHZ,
			kernel:   ps.Flags&pfKthread != 0,
		}
	}
	return snap, nil
}

// probe measures the machine for d while nothing of ours but the harness
// runs.
func (s *snapshotter) probe(ctx context.Context, d time.Duration) (Usage, error) {
	a, err := s.take()
	if err != nil {
		return Usage{}, err
	}
	if !ctxsleep.Sleep(ctx, d) {
		return Usage{}, ctx.Err()
	}
	b, err := s.take()
	if err != nil {
		return Usage{}, err
	}
	return usageBetween(a, b, os.Getpid(), 0, 0), nil
}

func (s *snapshotter) loadAvg() ([3]float64, error) {
	l, err := s.fs.LoadAvg()
	if err != nil {
		return [3]float64{}, fmt.Errorf("reading /proc/loadavg: %w", err)
	}
	return [3]float64{l.Load1, l.Load5, l.Load15}, nil
}

// usageBetween accounts the CPU between a and b. Ours are the harness
// (self, with its children: chatbench, once waited for) and the server
// (0: none); benchCPU is chatbench's CPU, for the record.
//
// A process alive at both counts its own and its children's growth; one
// born in between counts all it used; one that ended in between handed its
// time to the parent that waited for it, whose children's time then holds
// its whole life, so what it had used by a is taken off that parent again
// (or the nearest ancestor still alive, which collected it from a parent
// that ended too; or off the total when there is none).
func usageBetween(a, b cpuSnapshot, self, server int, benchCPU float64) Usage {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return Usage{}
	}
	alive := func(pid int, pa procTimes) bool {
		pb, ok := b.procs[pid]
		return ok && pb.start == pa.start
	}
	used := make(map[int]float64, len(b.procs))
	for pid, pb := range b.procs {
		u := pb.cpu + pb.children
		if pa, ok := a.procs[pid]; ok && pa.start == pb.start {
			u -= pa.cpu + pa.children
		}
		used[pid] = u
	}
	var unattributed float64
	for pid, pa := range a.procs {
		if alive(pid, pa) || pa.kernel {
			continue
		}
		// The nearest ancestor still alive collected its time.
		heir, ok := pa.ppid, false
		for hop := 0; hop < 64 && !ok; hop++ {
			anc, known := a.procs[heir]
			if !known {
				break
			}
			if ok = alive(heir, anc); !ok {
				heir = anc.ppid
			}
		}
		if ok {
			used[heir] -= pa.cpu + pa.children
		} else {
			unattributed += pa.cpu + pa.children
		}
	}
	var ours, kernel, other, serverCPU float64
	busiest, busiestCPU := "", 0.0
	for pid, u := range used {
		u = max(0, u)
		switch {
		case pid == self:
			ours += u
		case pid == server:
			ours += u
			serverCPU = u
		case b.procs[pid].kernel:
			kernel += u
		default:
			other += u
			if u > busiestCPU {
				busiest, busiestCPU = b.procs[pid].comm, u
			}
		}
	}
	other = max(0, other-unattributed)
	u := Usage{
		WallS:       round3(wall),
		OursCores:   round3(ours / wall),
		KernelCores: round3(kernel / wall),
		OtherCores:  round3(other / wall),
		StealCores:  round3(max(0, b.steal-a.steal) / wall),
		ServerCPUS:  round3(serverCPU),
		BenchCPUS:   round3(benchCPU),
	}
	if busiestCPU > 0 {
		u.Busiest, u.BusiestCores = busiest, round3(min(busiestCPU, other)/wall)
	}
	return u
}

func round3(f float64) float64 {
	return math.Round(f*1000) / 1000
}

package k8s_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestNATSConfig parses the ConfigMap's nats.conf with nats-server's own
// parser (the version in go.mod, which the cluster tests run against) and
// checks it against the StatefulSet: ports, JetStream store on the PVC and
// within it, cluster routes, and lame duck inside the grace period.
func TestNATSConfig(t *testing.T) {
	r, _, _ := base(t)
	ss, ok := r.statefulSets["nats"]
	if !ok {
		t.Fatal("no StatefulSet nats")
	}
	pod := ss.Spec.Template.Spec
	c := pod.Containers[0]

	// The image is the server version the repository tests against.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var tested string
	for _, l := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "github.com/nats-io/nats-server/v2" {
			tested = strings.TrimPrefix(f[1], "v")
		}
	}
	if tested == "" || !strings.HasPrefix(c.Image, "nats:"+tested) {
		t.Errorf("NATS image %s is not nats-server %s, the version go.mod tests against", c.Image, tested)
	}

	// Expand $SERVER_NAME as the pod does, then parse.
	conf := r.configMaps["nats-config"].Data["nats.conf"]
	t.Setenv("SERVER_NAME", "nats-0")
	f := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(f, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(f)
	if err != nil {
		t.Fatalf("nats-server rejects nats.conf: %v", err)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if int32(opts.Port) != ports["client"] || int32(opts.HTTPPort) != ports["monitor"] || int32(opts.Cluster.Port) != ports["cluster"] {
		t.Errorf("nats.conf ports client %d, monitor %d, cluster %d differ from the container's %v", opts.Port, opts.HTTPPort, opts.Cluster.Port, ports)
	}
	if opts.ServerName != "nats-0" {
		t.Errorf("server_name = %q, want the pod name from $SERVER_NAME", opts.ServerName)
	}

	if !opts.JetStream {
		t.Fatal("JetStream is off")
	}
	var dataMount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if m.MountPath == opts.StoreDir {
			dataMount = &c.VolumeMounts[i]
		}
	}
	if dataMount == nil {
		t.Fatalf("store_dir %s is not a mounted volume", opts.StoreDir)
	}
	var claim *corev1.PersistentVolumeClaim
	for i, p := range ss.Spec.VolumeClaimTemplates {
		if p.Name == dataMount.Name {
			claim = &ss.Spec.VolumeClaimTemplates[i]
		}
	}
	if claim == nil {
		t.Fatalf("store_dir %s is not on a PVC", opts.StoreDir)
	}
	// JetStream refuses to start when max_file_store exceeds the disk it has.
	if size := claim.Spec.Resources.Requests[corev1.ResourceStorage]; opts.JetStreamMaxStore <= 0 || opts.JetStreamMaxStore > size.Value() {
		t.Errorf("max_file_store %d must be positive and fit the %s PVC", opts.JetStreamMaxStore, size.String())
	}
	if lim := c.Resources.Limits.Memory(); opts.JetStreamMaxMemory <= 0 || opts.JetStreamMaxMemory > lim.Value()/2 {
		t.Errorf("max_memory_store %d must leave at least half of the %s memory limit to the server", opts.JetStreamMaxMemory, lim.String())
	}
	if gomem := envValue(c, "GOMEMLIMIT"); gomem != "" {
		q, err := resource.ParseQuantity(strings.TrimSuffix(gomem, "B"))
		if err != nil || q.Value() > c.Resources.Limits.Memory().Value() {
			t.Errorf("NATS GOMEMLIMIT %s must be below its memory limit", gomem)
		}
	}

	if opts.Cluster.Name == "" || len(opts.Routes) != int(*ss.Spec.Replicas) {
		t.Errorf("cluster %q with %d routes, want a named cluster routing to all %d servers", opts.Cluster.Name, len(opts.Routes), *ss.Spec.Replicas)
	}
	for _, u := range opts.Routes {
		if !strings.HasSuffix(u.Hostname(), "."+ss.Spec.ServiceName) || u.Port() != "6222" {
			t.Errorf("route %s is not a pod of the headless Service %s", u, ss.Spec.ServiceName)
		}
	}

	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if opts.LameDuckDuration <= 0 || opts.LameDuckDuration+opts.LameDuckGracePeriod >= grace {
		t.Errorf("lame duck %v + grace %v must end inside terminationGracePeriodSeconds %v", opts.LameDuckDuration, opts.LameDuckGracePeriod, grace)
	}
	if opts.PidFile == "" || !strings.Contains(strings.Join(c.Lifecycle.PreStop.Exec.Command, " "), "ldm="+opts.PidFile) {
		t.Errorf("preStop must signal lame duck through pid_file %q", opts.PidFile)
	}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

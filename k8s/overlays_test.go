package k8s_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestDevOverlay renders k8s/overlays/dev: one replica on the in-process
// hub, no NATS objects, a configuration the gateway accepts and the same
// drain budget as the base.
func TestDevOverlay(t *testing.T) {
	r := render(t, "overlays/dev")
	dep, ok := r.deployments["chatgate"]
	if !ok {
		t.Fatal("no Deployment chatgate")
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
		t.Errorf("dev replicas = %v, want 1 (the in-process hub does not span pods)", dep.Spec.Replicas)
	}
	if c := gatewayContainer(t, dep); c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("dev imagePullPolicy = %q, want IfNotPresent for images loaded into a local cluster", c.ImagePullPolicy)
	}
	if len(r.statefulSets) != 0 {
		t.Errorf("dev should not run NATS, found %d StatefulSets", len(r.statefulSets))
	}
	for _, n := range []string{"nats", "nats-headless"} {
		if _, ok := r.services[n]; ok {
			t.Errorf("dev should not have Service %s", n)
		}
	}
	if _, ok := r.configMaps["nats-config"]; ok {
		t.Error("dev should not have ConfigMap nats-config")
	}
	for _, p := range r.pdbs {
		if p.Name == "nats" {
			t.Error("dev should not have the nats PDB")
		}
	}
	for _, np := range r.netpols {
		if np.Name == "nats" {
			t.Error("dev should not have the nats NetworkPolicy")
		}
	}
	cm := r.configMaps["chatgate"]
	if cm.Data["CHATGATE_BACKPLANE"] != "" {
		t.Errorf("dev CHATGATE_BACKPLANE = %q, want empty (in-process hub)", cm.Data["CHATGATE_BACKPLANE"])
	}
	env := flagEnv()
	for k := range cm.Data {
		if !env[k] {
			t.Errorf("ConfigMap key %s is not a chatgate flag's environment variable", k)
		}
	}
	cfg := configFrom(t, cm)
	if err := cfg.Validate(); err != nil {
		t.Errorf("dev ConfigMap is not a valid configuration: %v", err)
	}
	grace := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= cfg.Gateway.ShutdownTimeout || grace < cfg.Gateway.DrainDelay+cfg.Gateway.DrainWindow+5*time.Second {
		t.Errorf("grace %v too short for shutdown-timeout %v / drain %v+%v", grace, cfg.Gateway.ShutdownTimeout, cfg.Gateway.DrainDelay, cfg.Gateway.DrainWindow)
	}
}

package k8s_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuestKeyFromOptionalSecret: in the base and both overlays, the guest
// key file the ConfigMap names lies in a read-only mount (no subPath, so a
// rotated key is swapped in) of the optional Secret chatgate-guest, which
// every replica shares. Optional: the manifests apply before the Secret
// exists, and each pod then signs with a key of its own.
func TestGuestKeyFromOptionalSecret(t *testing.T) {
	for _, dir := range []string{"base", "overlays/dev", "overlays/production"} {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			dep := r.deployments["chatgate"]
			file := r.configMaps["chatgate"].Data["CHATGATE_GUEST_KEY_FILE"]
			if file == "" {
				t.Fatal("the ConfigMap sets no CHATGATE_GUEST_KEY_FILE: replicas would not share guest identities")
			}
			var found bool
			for _, m := range gatewayContainer(t, dep).VolumeMounts {
				if !strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
					continue
				}
				found = true
				if filepath.Dir(file) != filepath.Clean(m.MountPath) {
					t.Errorf("%s is not directly in the mount %s", file, m.MountPath)
				}
				if !m.ReadOnly || m.SubPath != "" {
					t.Errorf("mount %s: readOnly %v, subPath %q; want read-only, whole volume", m.MountPath, m.ReadOnly, m.SubPath)
				}
				for _, v := range dep.Spec.Template.Spec.Volumes {
					if v.Name != m.Name {
						continue
					}
					s := v.Secret
					if s == nil || s.SecretName != "chatgate-guest" || s.Optional == nil || !*s.Optional {
						t.Errorf("volume %s: %+v; want the optional Secret chatgate-guest", v.Name, v.VolumeSource)
					}
					if s != nil && (s.DefaultMode == nil || *s.DefaultMode&0o007 != 0) {
						t.Errorf("volume %s: the key is readable by others (mode %v)", v.Name, s.DefaultMode)
					}
				}
			}
			if !found {
				t.Fatalf("no volume is mounted where %s is", file)
			}
		})
	}
}

// TestPresenceGraceFitsTheDrain: the presence grace covers a drained
// client's reconnect (its retry_ms, at most the drain retry max, plus a
// couple of seconds), and the drain can keep the last closed users' rooms
// for their whole grace before the shutdown timeout.
func TestPresenceGraceFitsTheDrain(t *testing.T) {
	_, _, cm := base(t)
	grace := mustDuration(t, cm, "CHATGATE_PRESENCE_GRACE")
	retry := mustDuration(t, cm, "CHATGATE_DRAIN_RETRY_MAX")
	delay := mustDuration(t, cm, "CHATGATE_DRAIN_DELAY")
	window := mustDuration(t, cm, "CHATGATE_DRAIN_WINDOW")
	shutdown := mustDuration(t, cm, "CHATGATE_SHUTDOWN_TIMEOUT")
	if grace < retry+2*time.Second {
		t.Errorf("presence grace %v does not cover a drained client's reconnect (drain-retry-max %v + 2s)", grace, retry)
	}
	if delay+window+grace > shutdown {
		t.Errorf("drain-delay %v + drain-window %v + presence grace %v exceed shutdown-timeout %v: the last users closed lose part of their grace", delay, window, grace, shutdown)
	}
}

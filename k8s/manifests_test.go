// Package k8s_test renders the kustomize base and checks it against the
// gateway's real flags and the invariants that keep rolling updates from
// dropping users. It needs no cluster.
package k8s_test

import (
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/chatgate/chatgate/gateway"
	"github.com/chatgate/chatgate/internal/appconfig"
)

// rendered holds every object of an overlay, strictly decoded.
type rendered struct {
	namespaces      []corev1.Namespace
	serviceAccounts []corev1.ServiceAccount
	configMaps      map[string]corev1.ConfigMap
	deployments     map[string]appsv1.Deployment
	statefulSets    map[string]appsv1.StatefulSet
	services        map[string]corev1.Service
	pdbs            []policyv1.PodDisruptionBudget
	netpols         []networkingv1.NetworkPolicy
	hpas            []autoscalingv2.HorizontalPodAutoscaler
	httpRoutes      []gatewayv1.HTTPRoute
	serviceMonitors []monitoringv1.ServiceMonitor
	prometheusRules []monitoringv1.PrometheusRule
	kinds           map[string]int
}

// apiVersions is the API version each kind must be written in: the typed
// structs below decode any version, so a stale one would otherwise pass.
var apiVersions = map[string]string{
	"Namespace":               "v1",
	"ServiceAccount":          "v1",
	"ConfigMap":               "v1",
	"Service":                 "v1",
	"Deployment":              "apps/v1",
	"StatefulSet":             "apps/v1",
	"PodDisruptionBudget":     "policy/v1",
	"NetworkPolicy":           "networking.k8s.io/v1",
	"HorizontalPodAutoscaler": "autoscaling/v2",
	"HTTPRoute":               "gateway.networking.k8s.io/v1",
	"ServiceMonitor":          "monitoring.coreos.com/v1",
	"PrometheusRule":          "monitoring.coreos.com/v1",
}

// render runs kustomize on dir and decodes each object into its typed
// struct, rejecting unknown or misspelt fields.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendered{
		configMaps:   map[string]corev1.ConfigMap{},
		deployments:  map[string]appsv1.Deployment{},
		statefulSets: map[string]appsv1.StatefulSet{},
		services:     map[string]corev1.Service{},
		kinds:        map[string]int{},
	}
	for _, res := range resMap.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		kind, name := res.GetKind(), res.GetName()
		r.kinds[kind]++
		if want, got := apiVersions[kind], res.GetApiVersion(); want != "" && got != want {
			t.Errorf("%s/%s has apiVersion %s, want %s", kind, name, got, want)
		}
		if ns := res.GetNamespace(); kind != "Namespace" && ns != "chatgate" {
			t.Errorf("%s/%s is in namespace %q, want chatgate", kind, name, ns)
		}
		obj := objectRef{kind: kind, name: name, yaml: y}
		switch kind {
		case "Namespace":
			r.namespaces = append(r.namespaces, decode[corev1.Namespace](t, obj))
		case "ServiceAccount":
			r.serviceAccounts = append(r.serviceAccounts, decode[corev1.ServiceAccount](t, obj))
		case "ConfigMap":
			r.configMaps[name] = decode[corev1.ConfigMap](t, obj)
		case "Deployment":
			r.deployments[name] = decode[appsv1.Deployment](t, obj)
		case "StatefulSet":
			r.statefulSets[name] = decode[appsv1.StatefulSet](t, obj)
		case "Service":
			r.services[name] = decode[corev1.Service](t, obj)
		case "PodDisruptionBudget":
			r.pdbs = append(r.pdbs, decode[policyv1.PodDisruptionBudget](t, obj))
		case "NetworkPolicy":
			r.netpols = append(r.netpols, decode[networkingv1.NetworkPolicy](t, obj))
		case "HorizontalPodAutoscaler":
			r.hpas = append(r.hpas, decode[autoscalingv2.HorizontalPodAutoscaler](t, obj))
		case "HTTPRoute":
			r.httpRoutes = append(r.httpRoutes, decode[gatewayv1.HTTPRoute](t, obj))
		case "ServiceMonitor":
			r.serviceMonitors = append(r.serviceMonitors, decode[monitoringv1.ServiceMonitor](t, obj))
		case "PrometheusRule":
			r.prometheusRules = append(r.prometheusRules, decode[monitoringv1.PrometheusRule](t, obj))
		default:
			t.Errorf("unexpected kind %s (%s): add it to the test", kind, name)
		}
	}
	return r
}

// objectRef is one rendered object.
type objectRef struct {
	kind, name string
	yaml       []byte
}

// decode decodes an object into its typed struct, rejecting unknown or
// misspelt fields.
func decode[T any](t *testing.T, o objectRef) T {
	t.Helper()
	var v T
	if err := yaml.UnmarshalStrict(o.yaml, &v); err != nil {
		t.Errorf("%s/%s does not decode strictly: %v", o.kind, o.name, err)
	}
	return v
}

// configFrom is the gateway configuration a pod gets from the ConfigMap:
// the defaults, overridden by its CHATGATE_* keys.
func configFrom(t *testing.T, cm corev1.ConfigMap) appconfig.Config {
	t.Helper()
	cfg := appconfig.Default()
	fs := flag.NewFlagSet("chatgate", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := appconfig.ApplyEnv(fs, func(k string) (string, bool) { v, ok := cm.Data[k]; return v, ok }); err != nil {
		t.Fatalf("ConfigMap %s values rejected: %v", cm.Name, err)
	}
	return cfg
}

// flagEnv is the set of CHATGATE_* variables the gateway reads.
func flagEnv() map[string]bool {
	cfg := appconfig.Default()
	fs := flag.NewFlagSet("chatgate", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	env := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { env[appconfig.EnvName(f.Name)] = true })
	return env
}

func mustDuration(t *testing.T, cm corev1.ConfigMap, key string) time.Duration {
	t.Helper()
	v, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm.Name, key)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("ConfigMap %s: %s=%q: %v", cm.Name, key, v, err)
	}
	return d
}

func base(t *testing.T) (*rendered, appsv1.Deployment, corev1.ConfigMap) {
	t.Helper()
	r := render(t, "base")
	dep, ok := r.deployments["chatgate"]
	if !ok {
		t.Fatal("no Deployment chatgate")
	}
	cm, ok := r.configMaps["chatgate"]
	if !ok {
		t.Fatal("no ConfigMap chatgate")
	}
	return r, dep, cm
}

func gatewayContainer(t *testing.T, dep appsv1.Deployment) corev1.Container {
	t.Helper()
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "chatgate" {
			return c
		}
	}
	t.Fatal("Deployment chatgate has no container chatgate")
	return corev1.Container{}
}

func TestBaseObjects(t *testing.T) {
	r, _, _ := base(t)
	if len(r.namespaces) != 1 || r.namespaces[0].Name != "chatgate" {
		t.Errorf("want exactly the chatgate Namespace, got %d", len(r.namespaces))
	}
	if len(r.serviceAccounts) != 1 {
		t.Fatalf("want one ServiceAccount, got %d", len(r.serviceAccounts))
	}
	if sa := r.serviceAccounts[0]; sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s must set automountServiceAccountToken: false", sa.Name)
	}
}

func TestConfigMapKeysAreFlags(t *testing.T) {
	_, _, cm := base(t)
	env := flagEnv()
	for k := range cm.Data {
		if !env[k] {
			t.Errorf("ConfigMap key %s is not the environment variable of any chatgate flag", k)
		}
	}
	for _, k := range []string{"CHATGATE_DRAIN_DELAY", "CHATGATE_DRAIN_WINDOW", "CHATGATE_SHUTDOWN_TIMEOUT", "CHATGATE_BACKPLANE", "CHATGATE_ALLOWED_ORIGINS"} {
		if _, ok := cm.Data[k]; !ok {
			t.Errorf("ConfigMap lacks %s", k)
		}
	}
	if got := cm.Data["CHATGATE_LOG_FORMAT"]; got != "json" {
		t.Errorf("CHATGATE_LOG_FORMAT = %q, want json", got)
	}
	// The whole ConfigMap must be a configuration the gateway accepts.
	cfg := configFrom(t, cm)
	if err := cfg.Validate(); err != nil {
		t.Errorf("ConfigMap is not a valid configuration: %v", err)
	}
}

func TestDrainBudget(t *testing.T) {
	_, dep, cm := base(t)
	c := gatewayContainer(t, dep)
	delay := mustDuration(t, cm, "CHATGATE_DRAIN_DELAY")
	window := mustDuration(t, cm, "CHATGATE_DRAIN_WINDOW")
	shutdown := mustDuration(t, cm, "CHATGATE_SHUTDOWN_TIMEOUT")
	gp := dep.Spec.Template.Spec.TerminationGracePeriodSeconds
	if gp == nil {
		t.Fatal("terminationGracePeriodSeconds is not set")
	}
	grace := time.Duration(*gp) * time.Second
	const slack = 5 * time.Second
	if grace < delay+window+slack {
		t.Errorf("terminationGracePeriodSeconds %v must exceed drain-delay %v + drain-window %v + %v slack", grace, delay, window, slack)
	}
	if grace <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v must exceed shutdown-timeout %v so the kubelet never SIGKILLs a draining pod", grace, shutdown)
	}
	// The drain settings must reach the container from the ConfigMap, not
	// be overridden by env or args that could drift from it.
	fromCM := false
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == cm.Name {
			fromCM = true
		}
	}
	if !fromCM {
		t.Errorf("container does not load ConfigMap %s with envFrom", cm.Name)
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, appconfig.EnvPrefix) {
			t.Errorf("container env sets %s; keep gateway settings in the ConfigMap", e.Name)
		}
	}
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if strings.HasPrefix(a, "--drain") || strings.HasPrefix(a, "--shutdown") || strings.HasPrefix(a, "-drain") || strings.HasPrefix(a, "-shutdown") {
			t.Errorf("container args override %s; the drain settings live in the ConfigMap", a)
		}
	}
	// Readiness must fail (and endpoints drop the pod) within drain-delay.
	rp := c.ReadinessProbe
	if rp == nil {
		t.Fatal("no readiness probe")
	}
	if rp.PeriodSeconds != 2 {
		t.Errorf("readiness periodSeconds = %d, want 2", rp.PeriodSeconds)
	}
	fail := rp.FailureThreshold
	if fail == 0 {
		fail = 3 // the Kubernetes default
	}
	if d := time.Duration(rp.PeriodSeconds*fail) * time.Second; d >= delay {
		t.Errorf("readiness detects a draining pod after %v, not within drain-delay %v", d, delay)
	}
	s := dep.Spec.Strategy
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxSurge == nil || s.RollingUpdate.MaxSurge.String() != "1" ||
		s.RollingUpdate.MaxUnavailable == nil || s.RollingUpdate.MaxUnavailable.String() != "0" {
		t.Errorf("strategy must be RollingUpdate maxSurge 1 maxUnavailable 0, got %+v", s)
	}
	// Rollouts drain one pod at a time: the next old pod stops only once the
	// previous one's drain is over.
	if ready := time.Duration(dep.Spec.MinReadySeconds) * time.Second; ready < shutdown {
		t.Errorf("minReadySeconds %v is shorter than shutdown-timeout %v: rollout drains would overlap", ready, shutdown)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		t.Errorf("want several replicas, got %v", dep.Spec.Replicas)
	}
	if cm.Data["CHATGATE_BACKPLANE"] == "" {
		t.Error("several replicas need CHATGATE_BACKPLANE")
	}

	// A full pod's users come back within drain-window + drain-retry-max,
	// spread over the other replicas, whose handshake limit must take them.
	cfg := configFrom(t, cm)
	spread := (cfg.Gateway.DrainWindow + cfg.Gateway.DrainRetryMax).Seconds()
	survivors := float64(*dep.Spec.Replicas - 1)
	if perPod, capacity := float64(cfg.Gateway.MaxConns)/spread/survivors, cfg.Gateway.HandshakeRate+float64(cfg.Gateway.HandshakeBurst)/spread; perPod > capacity {
		t.Errorf("a drained pod's %d users reconnect at %.0f/s to each of %.0f other pods, above their handshake limit (%.0f/s + burst %d)",
			cfg.Gateway.MaxConns, perPod, survivors, cfg.Gateway.HandshakeRate, cfg.Gateway.HandshakeBurst)
	}
	// Behind a proxy every connection has the proxy's address: per-IP limits
	// need trusted proxies, or must not bite before max-conns.
	if len(cfg.Gateway.TrustedProxies) == 0 && cfg.Gateway.MaxConnsPerIP < cfg.Gateway.MaxConns {
		t.Errorf("max-conns-per-ip %d with no trusted proxies caps a pod at %d connections per proxy", cfg.Gateway.MaxConnsPerIP, cfg.Gateway.MaxConnsPerIP)
	}
}

func TestProbesAndPorts(t *testing.T) {
	_, dep, cm := base(t)
	c := gatewayContainer(t, dep)
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 8080 || ports["admin"] != 9090 {
		t.Errorf("container ports = %v, want http 8080 and admin 9090", ports)
	}
	for flagEnv, port := range map[string]int32{"CHATGATE_ADDR": ports["http"], "CHATGATE_ADMIN_ADDR": ports["admin"]} {
		v, ok := cm.Data[flagEnv]
		if !ok {
			continue // the defaults :8080 and :9090 apply
		}
		if !strings.HasSuffix(v, fmt.Sprintf(":%d", port)) {
			t.Errorf("%s=%q does not listen on container port %d", flagEnv, v, port)
		}
	}
	def := gateway.DefaultConfig()
	if _, ok := cm.Data["CHATGATE_ADMIN_ADDR"]; !ok && def.AdminAddr != ":9090" {
		t.Errorf("default admin address %q is not :9090", def.AdminAddr)
	}
	check := func(what string, p *corev1.Probe, path string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe must be an httpGet", what)
			return
		}
		if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe is %s on port %s, want %s on port admin", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
		}
	}
	check("liveness", c.LivenessProbe, "/livez")
	check("readiness", c.ReadinessProbe, "/readyz")
	if c.StartupProbe != nil {
		check("startup", c.StartupProbe, "/livez")
	}
}

// exactVersion is a tag naming one release: 2.15.2, 0.1.0, 2.15.2-alpine.
var exactVersion = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$`)

func TestImagesPinned(t *testing.T) {
	r, _, _ := base(t)
	var pods []corev1.PodSpec
	for _, d := range r.deployments {
		pods = append(pods, d.Spec.Template.Spec)
	}
	for _, s := range r.statefulSets {
		pods = append(pods, s.Spec.Template.Spec)
	}
	for _, p := range pods {
		for _, c := range append(append([]corev1.Container{}, p.InitContainers...), p.Containers...) {
			// An exact release (x.y.z, optionally -variant), and a digest
			// only if it is well-formed: docs/deploy.md ("Pinned images")
			// shows how to add digests in an overlay.
			_, tag, digest := splitImage(c.Image)
			checkDigest(t, c.Image, digest)
			if digest == "" && !exactVersion.MatchString(tag) {
				t.Errorf("container %s image %q is not pinned to an exact version (x.y.z)", c.Name, c.Image)
			}
		}
	}
	for n, p := range podSpecs(r) {
		for _, c := range p.Containers {
			// Always re-checks the registry and imagePullSecrets at each start.
			if c.ImagePullPolicy != corev1.PullAlways {
				t.Errorf("%s/%s: imagePullPolicy %q, want Always", n, c.Name, c.ImagePullPolicy)
			}
		}
	}
	if img := gatewayContainer(t, r.deployments["chatgate"]).Image; img != "chatgate:0.1.0" {
		t.Errorf("gateway image = %q, want chatgate:0.1.0", img)
	}
}

func TestSecurityContextRestricted(t *testing.T) {
	r, _, _ := base(t)
	for name, p := range podSpecs(r) {
		if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false", name)
		}
		// Service links would put CHATGATE_PORT, CHATGATE_ADMIN_PORT, ...
		// among the gateway's own CHATGATE_* settings.
		if p.EnableServiceLinks == nil || *p.EnableServiceLinks {
			t.Errorf("%s: enableServiceLinks must be false", name)
		}
		psc := p.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
			psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod securityContext must set runAsNonRoot and seccomp RuntimeDefault", name)
		}
		// IDs above 10000 stay clear of users defined on the nodes.
		if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser <= 10000 || psc.RunAsGroup == nil || *psc.RunAsGroup <= 10000 {
			t.Errorf("%s: pod must run with a user and group ID above 10000", name)
		}
		for _, c := range p.Containers {
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s/%s: no securityContext", name, c.Name)
				continue
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s/%s: allowPrivilegeEscalation must be false", name, c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s/%s: readOnlyRootFilesystem must be true", name, c.Name)
			}
			if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
				t.Errorf("%s/%s: capabilities must drop ALL and add none", name, c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s/%s: privileged", name, c.Name)
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				t.Errorf("%s/%s: runs as root", name, c.Name)
			}
		}
	}
	dep := r.deployments["chatgate"]
	psc := dep.Spec.Template.Spec.SecurityContext
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != 65532 || psc.RunAsGroup == nil || *psc.RunAsGroup != 65532 {
		t.Error("gateway pod must run as 65532:65532 (the distroless nonroot user)")
	}
	c := gatewayContainer(t, dep)
	tmp := false
	for _, m := range c.VolumeMounts {
		if m.MountPath != "/tmp" {
			continue
		}
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.EmptyDir != nil {
				tmp = true
			}
		}
	}
	if !tmp {
		t.Error("gateway needs an emptyDir mounted at /tmp (the root filesystem is read-only)")
	}
}

func TestResources(t *testing.T) {
	r, dep, _ := base(t)
	for n, s := range r.statefulSets {
		for _, c := range s.Spec.Template.Spec.Containers {
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("StatefulSet/%s/%s: set a cpu request and a memory limit", n, c.Name)
			}
		}
	}
	c := gatewayContainer(t, dep)
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() {
		t.Error("gateway has no cpu request")
	}
	if req.Memory().IsZero() || lim.Memory().IsZero() {
		t.Fatal("gateway needs a memory request and limit")
	}
	if req.Memory().Cmp(*lim.Memory()) != 0 {
		t.Errorf("memory request %v != limit %v", req.Memory(), lim.Memory())
	}
	var gomem *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "GOMEMLIMIT" {
			gomem = &c.Env[i]
		}
	}
	if gomem == nil {
		t.Fatal("gateway has no GOMEMLIMIT")
	}
	limit := lim.Memory().Value()
	gomemBytes := limit
	switch {
	case gomem.ValueFrom != nil:
		rf := gomem.ValueFrom.ResourceFieldRef
		if rf == nil || rf.Resource != "limits.memory" {
			t.Errorf("GOMEMLIMIT must come from limits.memory, got %+v", gomem.ValueFrom)
		}
	default:
		v := strings.TrimSuffix(gomem.Value, "B") // Go writes MiB; resource.Quantity reads Mi
		q, err := resource.ParseQuantity(v)
		if err != nil {
			t.Fatalf("GOMEMLIMIT=%q: %v", gomem.Value, err)
		}
		if got := q.Value(); got > limit || got < limit*8/10 {
			t.Errorf("GOMEMLIMIT %d bytes should be 80-100%% of the %d-byte memory limit", got, limit)
		}
		gomemBytes = q.Value()
	}

	// A full pod must fit under GOMEMLIMIT: every admitted connection at
	// perConn (docs/benchmarks.md measured 4.4 KiB of RSS per idle
	// connection and a peak of 8 to 11 KiB under fan-out; rounded up),
	// every queued byte the
	// gateway admits before shedding, and a fixed baseline for the runtime,
	// rooms and history.
	const (
		perConn       = 12 << 10
		perHistoryMsg = 300 // a short chat line and its envelope
		baseline      = 64 << 20
	)
	conf := configFrom(t, r.configMaps["chatgate"])
	history := int64(conf.Rooms.MaxRooms) * int64(conf.Rooms.History) * perHistoryMsg
	need := int64(conf.Gateway.MaxConns)*perConn + conf.Gateway.TotalQueueBytes + history + baseline
	if need > gomemBytes {
		t.Errorf("max-conns %d x %d B + total-queue-bytes %d + max-rooms-total %d x history %d x %d B + %d B baseline = %d MiB exceeds GOMEMLIMIT (%d MiB)",
			conf.Gateway.MaxConns, perConn, conf.Gateway.TotalQueueBytes, conf.Rooms.MaxRooms, conf.Rooms.History, perHistoryMsg, baseline, need>>20, gomemBytes>>20)
	}

	// Ephemeral storage (logs, emptyDirs) is requested and capped everywhere.
	for n, pod := range podSpecs(r) {
		for _, c := range pod.Containers {
			if c.Resources.Requests.StorageEphemeral().IsZero() || c.Resources.Limits.StorageEphemeral().IsZero() {
				t.Errorf("%s/%s: set an ephemeral-storage request and limit", n, c.Name)
			}
		}
	}
}

// podSpecs returns the pod template of every workload, by kind/name.
func podSpecs(r *rendered) map[string]corev1.PodSpec {
	pods := map[string]corev1.PodSpec{}
	for n, d := range r.deployments {
		pods["Deployment/"+n] = d.Spec.Template.Spec
	}
	for n, s := range r.statefulSets {
		pods["StatefulSet/"+n] = s.Spec.Template.Spec
	}
	return pods
}

func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

func TestSelectorsMatchPods(t *testing.T) {
	r, dep, _ := base(t)
	gwLabels := dep.Spec.Template.Labels
	if !selects(t, dep.Spec.Selector, gwLabels) {
		t.Error("Deployment selector does not select its own pods")
	}
	natsSS, ok := r.statefulSets["nats"]
	if !ok {
		t.Fatal("no StatefulSet nats")
	}
	natsLabels := natsSS.Spec.Template.Labels
	pdbFor := map[string]bool{}
	for _, p := range r.pdbs {
		switch {
		case selects(t, p.Spec.Selector, gwLabels):
			pdbFor["chatgate"] = true
			ok := (p.Spec.MaxUnavailable != nil && p.Spec.MaxUnavailable.String() == "1") ||
				(p.Spec.MinAvailable != nil && p.Spec.MinAvailable.IntValue() >= 1 && p.Spec.MinAvailable.IntValue() < int(*dep.Spec.Replicas))
			if !ok {
				t.Errorf("PDB %s must allow exactly-one-at-a-time disruption", p.Name)
			}
		case selects(t, p.Spec.Selector, natsLabels):
			pdbFor["nats"] = true
		default:
			t.Errorf("PDB %s selects no pods", p.Name)
		}
	}
	if !pdbFor["chatgate"] || !pdbFor["nats"] {
		t.Errorf("want a PDB for the gateway and for NATS, have %v", pdbFor)
	}
	found := false
	for _, np := range r.netpols {
		if !selects(t, &np.Spec.PodSelector, gwLabels) {
			continue
		}
		found = true
		var httpOpen, adminRestricted bool
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				if p.Port == nil {
					continue
				}
				switch p.Port.String() {
				case "http", "8080":
					httpOpen = httpOpen || len(in.From) == 0
				case "admin", "9090":
					adminRestricted = len(in.From) > 0
					for _, f := range in.From {
						if f.NamespaceSelector == nil || len(f.NamespaceSelector.MatchLabels)+len(f.NamespaceSelector.MatchExpressions) == 0 {
							t.Errorf("NetworkPolicy %s: admin port must be limited to labelled namespaces", np.Name)
						}
					}
				}
			}
		}
		if !httpOpen || !adminRestricted {
			t.Errorf("NetworkPolicy %s: http open %v, admin restricted %v; want both", np.Name, httpOpen, adminRestricted)
		}
		var toNATS, toDNS bool
		for _, eg := range np.Spec.Egress {
			for _, p := range eg.Ports {
				if p.Port == nil {
					continue
				}
				switch p.Port.IntValue() {
				case 4222:
					for _, to := range eg.To {
						if to.PodSelector != nil && selects(t, to.PodSelector, natsLabels) {
							toNATS = true
						}
					}
				case 53:
					toDNS = true
				}
			}
		}
		if !toNATS || !toDNS {
			t.Errorf("NetworkPolicy %s: egress to NATS %v, DNS %v; want both", np.Name, toNATS, toDNS)
		}
	}
	if !found {
		t.Error("no NetworkPolicy selects the gateway pods")
	}
	// NATS takes clients from the gateway pods only.
	natsPolicy := false
	for _, np := range r.netpols {
		if !selects(t, &np.Spec.PodSelector, natsLabels) {
			continue
		}
		natsPolicy = true
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				if p.Port == nil || (p.Port.String() != "client" && p.Port.IntValue() != 4222) {
					continue
				}
				for _, f := range in.From {
					if f.PodSelector == nil || f.NamespaceSelector != nil || f.IPBlock != nil || !selects(t, f.PodSelector, gwLabels) {
						t.Errorf("NetworkPolicy %s: NATS client port open to %+v, want only the gateway pods", np.Name, f)
					}
				}
				if len(in.From) == 0 {
					t.Errorf("NetworkPolicy %s: NATS client port open to everyone", np.Name)
				}
			}
		}
	}
	if !natsPolicy {
		t.Error("no NetworkPolicy selects the NATS pods")
	}
	for _, name := range []string{"chatgate", "chatgate-admin"} {
		svc, ok := r.services[name]
		if !ok {
			t.Errorf("no Service %s", name)
			continue
		}
		if !selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, gwLabels) {
			t.Errorf("Service %s does not select the gateway pods", name)
		}
	}
	svc := r.services["chatgate"]
	if svc.Spec.SessionAffinity != "" && svc.Spec.SessionAffinity != corev1.ServiceAffinityNone {
		t.Errorf("Service chatgate sessionAffinity = %s, want none", svc.Spec.SessionAffinity)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.String() != "http" ||
		svc.Spec.Ports[0].AppProtocol == nil || *svc.Spec.Ports[0].AppProtocol != "http" {
		t.Errorf("Service chatgate must map port 80 to http with appProtocol http, got %+v", svc.Spec.Ports)
	}
	admin := r.services["chatgate-admin"]
	if len(admin.Spec.Ports) != 1 || admin.Spec.Ports[0].Port != 9090 {
		t.Errorf("Service chatgate-admin must expose 9090, got %+v", admin.Spec.Ports)
	}
	tsc := dep.Spec.Template.Spec.TopologySpreadConstraints
	if len(tsc) == 0 || tsc[0].TopologyKey != "kubernetes.io/hostname" || !selects(t, tsc[0].LabelSelector, gwLabels) {
		t.Error("gateway pods must spread across kubernetes.io/hostname")
	}
}

func TestNATS(t *testing.T) {
	r, _, cm := base(t)
	ss, ok := r.statefulSets["nats"]
	if !ok {
		t.Fatal("no StatefulSet nats")
	}
	if ss.Spec.Replicas == nil || *ss.Spec.Replicas != 3 {
		t.Errorf("NATS replicas = %v, want 3", ss.Spec.Replicas)
	}
	if len(ss.Spec.VolumeClaimTemplates) == 0 {
		t.Error("NATS has no PVCs")
	}
	h, ok := r.services[ss.Spec.ServiceName]
	if !ok || h.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("StatefulSet serviceName %q must be a headless Service", ss.Spec.ServiceName)
	}
	if _, ok := r.services["nats"]; !ok || !strings.Contains(cm.Data["CHATGATE_BACKPLANE"], "nats://nats:4222") {
		t.Error("CHATGATE_BACKPLANE must point at the nats client Service")
	}
	conf := r.configMaps["nats-config"].Data["nats.conf"]
	for _, want := range []string{"jetstream", "cluster", "routes", "lame_duck_duration"} {
		if !strings.Contains(conf, want) {
			t.Errorf("nats.conf lacks %s", want)
		}
	}
	for i := range *ss.Spec.Replicas {
		if route := fmt.Sprintf("nats-%d.%s:6222", i, ss.Spec.ServiceName); !strings.Contains(conf, route) {
			t.Errorf("nats.conf lacks route %s", route)
		}
	}
	c := ss.Spec.Template.Spec.Containers[0]
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
		!strings.Contains(strings.Join(c.Lifecycle.PreStop.Exec.Command, " "), "ldm") {
		t.Error("NATS needs a lame-duck preStop hook")
	}
	if gp := ss.Spec.Template.Spec.TerminationGracePeriodSeconds; gp == nil || *gp <= 40 {
		t.Error("NATS terminationGracePeriodSeconds must exceed lame_duck_duration (30s) plus slack")
	}
	if rep, ok := cm.Data["CHATGATE_STREAM_REPLICAS"]; ok {
		n, err := strconv.Atoi(rep)
		if err != nil || n < 1 || int32(n) > *ss.Spec.Replicas {
			t.Errorf("CHATGATE_STREAM_REPLICAS %q must be between 1 and the NATS cluster size %d", rep, *ss.Spec.Replicas)
		}
	}
}

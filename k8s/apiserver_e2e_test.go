package k8s_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// This file applies the manifests to a real Kubernetes API server: etcd and
// kube-apiserver built from the Go module proxy by .ci/kube-build (the
// versions pinned in tools/kube/go.mod), with no kubelet, scheduler or
// controller manager, driven by the kubectl of the same release. What it
// proves that the offline tests cannot: the server accepts every object
// (validation, defaulting, the Pod Security admission of the namespace's
// "restricted" level), `kubectl apply` is idempotent both client-side and
// server-side, switching an installation to server-side apply conflicts
// with nothing, and the checks docs/deploy.md tells operators to run work
// on a fresh cluster.

// kubeTools are the binaries the test runs.
type kubeTools struct{ etcd, apiserver, kubectl string }

// requireKubeTools finds the binaries .ci/kube-build puts in
// tools/kube/bin (or in $CHATGATE_KUBE_BIN). Without them the test skips,
// or fails under CHATGATE_E2E=1.
func requireKubeTools(t *testing.T) kubeTools {
	t.Helper()
	dir := os.Getenv("CHATGATE_KUBE_BIN")
	if dir == "" {
		dir = filepath.Join("..", "tools", "kube", "bin")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	tools := kubeTools{
		etcd:      filepath.Join(dir, "etcd"),
		apiserver: filepath.Join(dir, "kube-apiserver"),
		kubectl:   filepath.Join(dir, "kubectl"),
	}
	var missing []string
	for _, p := range []string{tools.etcd, tools.apiserver, tools.kubectl} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not built: run `bash .ci/kube-build` (a cold build takes several minutes), or set CHATGATE_KUBE_BIN to a directory with etcd, kube-apiserver and kubectl",
			strings.Join(missing, ", "))
		if os.Getenv("CHATGATE_E2E") == "1" {
			t.Fatalf("CHATGATE_E2E=1 but %s", msg)
		}
		t.Skipf("skipping the API server test: %s; set CHATGATE_E2E=1 to make this a failure", msg)
	}
	return tools
}

// TestAPIServerApply applies k8s/overlays/dev, k8s/overlays/production and
// the example site overlay of docs/deploy.md (production plus the
// gateway-api component, patched as the guide says) to a fresh API server
// each, once with client-side and once with server-side apply. Each apply
// must exit 0 without a warning, `kubectl diff` must be empty afterwards,
// and a second apply must change nothing (no object's resourceVersion
// moves). The client-side installation is then switched to server-side
// apply, which must not conflict. Every pod the workloads would create must
// pass the namespace's Pod Security admission.
func TestAPIServerApply(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	tools := requireKubeTools(t)
	work := copyManifests(t)
	promCRDs := prometheusOperatorCRDs(t)
	gatewayCRDs := gatewayAPICRDs(t)
	check := documentedCheck(t)

	overlays := []struct {
		name, dir string
		crds      []string
	}{
		{"dev", "k8s/overlays/dev", nil},
		{"production", "k8s/overlays/production", []string{promCRDs}},
		{"site", "k8s/overlays/site", []string{promCRDs, gatewayCRDs}},
	}
	for _, o := range overlays {
		t.Run(o.name+"/client-side", func(t *testing.T) {
			c := startCluster(t, tools, work)
			if len(o.crds) > 0 {
				// What docs/deploy.md says happens without the CRDs.
				c.mustKubectl(t, "apply", "-f", "k8s/base/namespace.yaml")
				r := c.kubectl(t, "apply", "-k", o.dir, "--dry-run=server")
				if r.code == 0 || !strings.Contains(r.stderr, `no matches for kind "ServiceMonitor"`) {
					t.Errorf("without the Prometheus Operator CRDs, want the dry run to fail on the ServiceMonitor; %v", r)
				}
			}
			c.installCRDs(t, o.crds...)
			c.runDocumentedCheck(t, check, o.dir, false)
			c.applyIdempotent(t, o.dir, false)
			c.checkPodsAdmitted(t)
			// An installation made with client-side apply, switched to
			// server-side apply (docs/deploy.md, "Server-side apply").
			c.applyIdempotent(t, o.dir, true)
		})
		t.Run(o.name+"/server-side", func(t *testing.T) {
			c := startCluster(t, tools, work)
			c.installCRDs(t, o.crds...)
			c.runDocumentedCheck(t, check, o.dir, true)
			c.applyIdempotent(t, o.dir, true)
			c.checkPodsAdmitted(t)
		})
	}
}

// copyManifests copies k8s/base, k8s/components and k8s/overlays into a
// temporary k8s/ and adds k8s/overlays/site, the example overlay of
// docs/deploy.md. kubectl then runs in the copy's parent with the paths the
// guide uses.
func copyManifests(t *testing.T) string {
	t.Helper()
	work := t.TempDir()
	for _, d := range []string{"base", "components", "overlays"} {
		if err := os.CopyFS(filepath.Join(work, "k8s", d), os.DirFS(d)); err != nil {
			t.Fatal(err)
		}
	}
	site := filepath.Join(work, "k8s", "overlays", "site")
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "kustomization.yaml"), siteOverlay(t), 0o644); err != nil {
		t.Fatal(err)
	}
	return work
}

// docBlock is a fenced code block of a Markdown document.
type docBlock struct {
	section string // the heading above it
	lang    string
	body    string
}

func docBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []docBlock
	var section string
	var cur *docBlock
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(line, "#"):
			section = strings.TrimSpace(strings.TrimLeft(line, "#"))
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &docBlock{section: section, lang: strings.TrimPrefix(trimmed, "```")}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// findBlock returns the one block of section with the given language that
// contains every string of want.
func findBlock(t *testing.T, blocks []docBlock, section, lang string, want ...string) string {
	t.Helper()
	var found []string
	for _, b := range blocks {
		if b.section != section || b.lang != lang {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(b.body, w)
		}
		if ok {
			found = append(found, b.body)
		}
	}
	if len(found) != 1 {
		t.Fatalf("docs/deploy.md: want one %s block under %q containing %q, found %d", lang, section, want, len(found))
	}
	return found[0]
}

// siteOverlay is the starting overlay of docs/deploy.md ("Configure") with
// the Gateway API route added as its "Gateway API" section says.
func siteOverlay(t *testing.T) []byte {
	t.Helper()
	blocks := docBlocks(t, "../docs/deploy.md")
	var start, route map[string]any
	if err := yaml.Unmarshal([]byte(findBlock(t, blocks, "Configure", "yaml", "kind: Kustomization", "../production")), &start); err != nil {
		t.Fatalf("docs/deploy.md starting overlay: %v", err)
	}
	if err := yaml.Unmarshal([]byte(findBlock(t, blocks, "Gateway API", "yaml", "components/gateway-api")), &route); err != nil {
		t.Fatalf("docs/deploy.md Gateway API overlay: %v", err)
	}
	startPatches, _ := start["patches"].([]any)
	routePatches, _ := route["patches"].([]any)
	if len(startPatches) == 0 || len(routePatches) == 0 || route["components"] == nil {
		t.Fatalf("docs/deploy.md: the overlays lost their patches or components: %v / %v", start, route)
	}
	start["components"] = route["components"]
	start["patches"] = append(startPatches, routePatches...)
	b, err := yaml.Marshal(start)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// documentedCheck is the command sequence docs/deploy.md gives for checking
// an overlay against a cluster before installing it.
func documentedCheck(t *testing.T) [][]string {
	t.Helper()
	body := findBlock(t, docBlocks(t, "../docs/deploy.md"), "Checking an overlay against a cluster", "sh", "--dry-run=server")
	var cmds [][]string
	for _, l := range strings.Split(body, "\n") {
		l, _, _ = strings.Cut(l, "#")
		if f := strings.Fields(l); len(f) > 0 {
			if f[0] != "kubectl" {
				t.Fatalf("docs/deploy.md: the check runs %q; the test knows only kubectl", l)
			}
			cmds = append(cmds, f[1:])
		}
	}
	if len(cmds) == 0 {
		t.Fatal("docs/deploy.md: no commands in the check")
	}
	return cmds
}

// modDownload fetches a module version into the module cache (a no-op when
// it is there) and returns its directory.
func modDownload(t *testing.T, dir, mod string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", mod)
	cmd.Dir = dir
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || info.Dir == "" {
		t.Fatalf("go mod download %s: %v %s %s", mod, err, info.Error, out)
	}
	return info.Dir
}

// prometheusOperatorCRDs is the Prometheus Operator's CRD directory, of
// the release whose API types go.mod requires (the types the offline tests
// decode ServiceMonitor and PrometheusRule with).
func prometheusOperatorCRDs(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring")
	cmd.Dir = ".."
	v, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// The repository's root module holds the example CRDs; fetch it outside
	// this module so that go.mod does not have to require it.
	dir := modDownload(t, t.TempDir(), "github.com/prometheus-operator/prometheus-operator@"+strings.TrimSpace(string(v)))
	return filepath.Join(dir, "example", "prometheus-operator-crd")
}

// gatewayAPICRDs is the standard channel's CRD directory of the Gateway API
// release go.mod requires.
func gatewayAPICRDs(t *testing.T) string {
	t.Helper()
	return filepath.Join(modDownload(t, "..", "sigs.k8s.io/gateway-api"), "config", "crd", "standard")
}

// cluster is one etcd and one kube-apiserver, each in its own temporary
// directory, and a kubeconfig for an administrator (a client certificate in
// group system:masters).
type cluster struct {
	tools      kubeTools
	dir        string // certificates, kubeconfig, logs, etcd data
	work       string // kubectl's working directory (copyManifests)
	kubeconfig string
}

// startCluster starts etcd and kube-apiserver on free loopback ports and
// waits until the API server reports ready. It stops both when the test
// ends.
func startCluster(t *testing.T, tools kubeTools, work string) *cluster {
	t.Helper()
	dir := t.TempDir()
	certs := writePKI(t, dir)
	// A port found free can be taken before the server binds it: try again
	// with new ports then.
	for attempt := 1; ; attempt++ {
		c, err := tryStartCluster(t, tools, work, filepath.Join(dir, strconv.Itoa(attempt)), certs)
		if err == nil {
			return c
		}
		if !errors.Is(err, errAddrInUse) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; retrying on other ports", attempt, err)
	}
}

var errAddrInUse = errors.New("address already in use")

func tryStartCluster(t *testing.T, tools kubeTools, work, dir string, certs pkiFiles) (*cluster, error) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	etcdClient, etcdPeer, apiPort := freePort(t), freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	etcd := startProc(t, dir, "etcd", tools.etcd,
		"--name=e2e",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=e2e="+peerURL,
		// A throw-away store: no fsync, so a busy disk does not slow the test.
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	api := startProc(t, dir, "kube-apiserver", tools.apiserver,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The kubernetes Service's endpoints would point at the loopback
		// address, which the reconciler refuses; nothing here uses them.
		"--endpoint-reconciler-type=none",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file="+certs.serverCert,
		"--tls-private-key-file="+certs.serverKey,
		"--client-ca-file="+certs.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+certs.saPub,
		"--service-account-signing-key-file="+certs.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--profiling=false",
	)
	stop := func() { api.stop(t); etcd.stop(t) }

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: certs.clientTLS(t)}, Timeout: 5 * time.Second}
	readyz := fmt.Sprintf("https://127.0.0.1:%d/readyz", apiPort)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		for _, p := range []*proc{etcd, api} {
			select {
			case <-p.done:
				stop()
				log := p.logTail(t, 40)
				err := fmt.Errorf("%s exited before the API server was ready (%v):\n%s", p.name, p.err, log)
				if strings.Contains(log, "address already in use") {
					err = fmt.Errorf("%w: %w", errAddrInUse, err)
				}
				return nil, err
			default:
			}
		}
		resp, err := client.Get(readyz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("kube-apiserver not ready within 3 minutes (last: %v):\n%s", err, api.logTail(t, 40))
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-api.done:
		case <-etcd.done:
		}
	}
	t.Cleanup(stop)

	c := &cluster{tools: tools, dir: dir, work: work, kubeconfig: filepath.Join(dir, "kubeconfig")}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster:
      server: https://127.0.0.1:%d
      certificate-authority: %s
users:
  - name: admin
    user:
      client-certificate: %s
      client-key: %s
contexts:
  - name: e2e
    context: {cluster: e2e, user: admin}
current-context: e2e
`, apiPort, certs.caCert, certs.clientCert, certs.clientKey)
	if err := os.WriteFile(c.kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return c, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a server process whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, set before done is closed
}

func startProc(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p
}

// stop ends the process (SIGTERM, then SIGKILL after 30 s) and waits for
// it; on a failed test it logs the end of the process's output.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if t.Failed() {
		t.Logf("%s log (last lines):\n%s", p.name, p.logTail(t, 30))
	}
}

func (p *proc) logTail(t *testing.T, n int) string {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pkiFiles are the certificates and keys of a cluster, as files.
type pkiFiles struct {
	caCert, serverCert, serverKey, clientCert, clientKey, saKey, saPub string
}

// writePKI makes a CA, the API server's serving certificate for
// 127.0.0.1, an administrator's client certificate (group system:masters)
// and the service account token signing key pair.
func writePKI(t *testing.T, dir string) pkiFiles {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}
	serial := int64(0)
	now := time.Now()
	sign := func(tmpl *x509.Certificate, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) ([]byte, *x509.Certificate) {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return der, cert
	}
	var f pkiFiles
	caKey := newKey()
	caDER, ca := sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "chatgate-e2e-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil, &caKey.PublicKey, caKey)
	f.caCert = write("ca.crt", "CERTIFICATE", caDER)

	serverKey := newKey()
	serverDER, _ := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &serverKey.PublicKey, caKey)
	f.serverCert = write("apiserver.crt", "CERTIFICATE", serverDER)
	f.serverKey = writeKey("apiserver.key", serverKey)

	clientKey := newKey()
	clientDER, _ := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "chatgate-e2e-admin", Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &clientKey.PublicKey, caKey)
	f.clientCert = write("admin.crt", "CERTIFICATE", clientDER)
	f.clientKey = writeKey("admin.key", clientKey)

	saKey := newKey()
	f.saKey = writeKey("sa.key", saKey)
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	f.saPub = write("sa.pub", "PUBLIC KEY", pub)
	return f
}

// clientTLS is the administrator's TLS configuration, trusting the CA.
func (f pkiFiles) clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(f.clientCert, f.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(f.caCert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// kubectlResult is one kubectl run.
type kubectlResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r kubectlResult) String() string {
	return fmt.Sprintf("kubectl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// kubectl runs kubectl against the cluster in the manifests' copy, with a
// HOME and cache of the cluster's own.
func (c *cluster) kubectl(t *testing.T, args ...string) kubectlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := append([]string{"--kubeconfig=" + c.kubeconfig, "--cache-dir=" + filepath.Join(c.dir, "kube-cache")}, args...)
	cmd := exec.CommandContext(ctx, c.tools.kubectl, full...)
	cmd.Dir = c.work
	env := []string{"HOME=" + c.dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBECONFIG=") && !strings.HasPrefix(kv, "KUBECTL_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := kubectlResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	out := r.stdout
	if len(out) > 2000 {
		out = out[:2000] + fmt.Sprintf("... (%d bytes)\n", len(r.stdout))
	}
	t.Logf("$ kubectl %s (exit %d)\n%s%s", strings.Join(args, " "), r.code, out, r.stderr)
	return r
}

// mustKubectl runs kubectl and fails the test unless it exits 0 without
// writing anything to standard error: server warnings (deprecations, Pod
// Security "would violate", unknown fields) and kubectl's own all go there.
func (c *cluster) mustKubectl(t *testing.T, args ...string) kubectlResult {
	t.Helper()
	r := c.kubectl(t, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("want exit 0 and no warnings; %v", r)
	}
	return r
}

// installCRDs installs CustomResourceDefinitions the way their projects
// say (server-side: the Prometheus Operator's are too large for the
// last-applied annotation) and waits until the API server serves them.
func (c *cluster) installCRDs(t *testing.T, dirs ...string) {
	t.Helper()
	if len(dirs) == 0 {
		return
	}
	for _, d := range dirs {
		if r := c.kubectl(t, "apply", "--server-side", "-f", d); r.code != 0 {
			t.Fatalf("installing the CRDs of %s: %v", d, r)
		}
	}
	if r := c.kubectl(t, "wait", "--for=condition=Established", "crd", "--all", "--timeout=2m"); r.code != 0 {
		t.Fatalf("CRDs not established: %v", r)
	}
}

// runDocumentedCheck runs docs/deploy.md's pre-install check against the
// fresh cluster, for overlay instead of the guide's k8s/overlays/site (and
// with --server-side on every apply for a server-side installation).
func (c *cluster) runDocumentedCheck(t *testing.T, check [][]string, overlay string, serverSide bool) {
	t.Helper()
	for _, cmd := range check {
		args := make([]string, len(cmd))
		for i, a := range cmd {
			args[i] = strings.ReplaceAll(a, "k8s/overlays/site", overlay)
		}
		if serverSide && args[0] == "apply" {
			args = append(args, "--server-side")
		}
		c.mustKubectl(t, args...)
	}
}

// applyIdempotent applies overlay, then requires `kubectl diff` to be
// empty and a second apply to change no object.
func (c *cluster) applyIdempotent(t *testing.T, overlay string, serverSide bool) {
	t.Helper()
	apply := []string{"apply", "-k", overlay}
	diff := []string{"diff", "-k", overlay}
	if serverSide {
		apply = append(apply, "--server-side")
		diff = append(diff, "--server-side")
	}
	// A server-side apply conflict is an error (exit 1) naming the
	// conflicting fields and their managers.
	c.mustKubectl(t, apply...)
	if r := c.kubectl(t, diff...); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("kubectl diff is not empty right after the apply; %v", r)
	}
	before := c.resourceVersions(t, overlay)
	r := c.mustKubectl(t, apply...)
	if !serverSide {
		// Server-side apply reports every object as serverside-applied;
		// client-side apply says what it did. It always sends a
		// PodDisruptionBudget's selector (its patch strategy is "replace")
		// and so reports it configured, although the server stores nothing
		// new: the resourceVersions below prove that.
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			pdb := strings.HasPrefix(l, "poddisruptionbudget.policy/") && strings.HasSuffix(l, " configured")
			if !strings.HasSuffix(l, " unchanged") && !pdb {
				t.Errorf("second client-side apply: %s", l)
			}
		}
	}
	after := c.resourceVersions(t, overlay)
	if len(before) == 0 {
		t.Fatal("kubectl get -k found no objects")
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if after[k] != before[k] {
			t.Errorf("the second apply (server-side %v) changed %s (resourceVersion %s, then %s)", serverSide, k, before[k], after[k])
		}
	}
}

// resourceVersions maps each object of overlay (kind/namespace/name) to
// its resourceVersion, which moves with every change the server stores.
func (c *cluster) resourceVersions(t *testing.T, overlay string) map[string]string {
	t.Helper()
	r := c.mustKubectl(t, "get", "-k", overlay, "-o", "json")
	var list struct {
		Items []struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("kubectl get -k %s: %v", overlay, err)
	}
	rv := map[string]string{}
	for _, it := range list.Items {
		rv[it.Kind+"/"+it.Metadata.Namespace+"/"+it.Metadata.Name] = it.Metadata.ResourceVersion
	}
	return rv
}

// checkPodsAdmitted creates, as a server-side dry run, the pods the
// workloads' controllers would create (this cluster runs no controllers),
// so that the namespace's enforcing Pod Security admission judges real
// pods, not just templates.
func (c *cluster) checkPodsAdmitted(t *testing.T) {
	t.Helper()
	// The controller manager's service account controller would have made
	// the namespace's default ServiceAccount, which pods without a
	// serviceAccountName (NATS) run as.
	if r := c.kubectl(t, "get", "serviceaccount", "default", "-n", "chatgate"); r.code != 0 {
		c.mustKubectl(t, "create", "serviceaccount", "default", "-n", "chatgate")
	}
	r := c.mustKubectl(t, "get", "deployments,statefulsets", "-n", "chatgate", "-o", "json")
	var list struct {
		Items []struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				Template             corev1.PodTemplateSpec         `json:"template"`
				VolumeClaimTemplates []corev1.PersistentVolumeClaim `json:"volumeClaimTemplates"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 {
		t.Fatal("no workloads in namespace chatgate")
	}
	var pods []corev1.Pod
	for _, w := range list.Items {
		name := w.Metadata.Name + "-0"
		spec := *w.Spec.Template.Spec.DeepCopy()
		// As the StatefulSet controller does: a claim per template.
		for _, vct := range w.Spec.VolumeClaimTemplates {
			spec.Volumes = append(spec.Volumes, corev1.Volume{
				Name:         vct.Name,
				VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: vct.Name + "-" + name}},
			})
		}
		pods = append(pods, corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Namespace:   "chatgate",
				Labels:      w.Spec.Template.Labels,
				Annotations: w.Spec.Template.Annotations,
			},
			Spec: spec,
		})
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": pods})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(c.dir, "pods.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r = c.mustKubectl(t, "create", "--dry-run=server", "-f", file)
	if n := strings.Count(r.stdout, " created (server dry run)"); n != len(pods) {
		t.Errorf("%d of %d pods admitted", n, len(pods))
	}
}

package k8s_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// dockerfile is ../Dockerfile as instructions, continuation lines joined.
type dockerInstr struct{ op, args string }

func readDockerfile(t *testing.T) []dockerInstr {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstr
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		op, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDockerfile checks the image recipe against the module, the Deployment
// and the binary (no Docker engine needed): the build step is run as
// written and must stamp the version, the runtime stage must match the
// pod's user and ports, and .dockerignore must keep what the build needs.
func TestDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	instrs := readDockerfile(t)
	var froms []string
	var build, user, entrypoint string
	var expose []string
	var copies []string
	for _, in := range instrs {
		switch in.op {
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			if strings.Contains(in.args, "go build") {
				build = in.args
			}
		case "USER":
			user = in.args
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			copies = append(copies, in.args)
		}
	}
	if len(froms) != 2 {
		t.Fatalf("want a build stage and a runtime stage, got FROM %v", froms)
	}

	// The build stage's Go is the module's.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var goVersion string
	for _, l := range strings.Split(string(mod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			goVersion = strings.TrimSpace(v)
		}
	}
	// Both base images are pinned: the build stage to exactly that Go
	// release (golang:1.26 would float to every later patch release), with
	// an optional variant such as -trixie; the runtime to a Debian release of
	// distroless (it has no version tags). A digest may follow either.
	img, _, _ := strings.Cut(froms[0], " ")
	name, tag, digest := splitImage(img)
	if ver, _, _ := strings.Cut(tag, "-"); name != "golang" || ver != goVersion {
		t.Errorf("build stage %q: want golang:%s, the Go of go.mod, optionally with a -variant and a digest", froms[0], goVersion)
	}
	checkDigest(t, img, digest)
	rt, _, _ := strings.Cut(froms[1], " ")
	name, tag, digest = splitImage(rt)
	if !distrolessStatic.MatchString(name) || tag != "nonroot" {
		t.Errorf("runtime stage %q, want gcr.io/distroless/static-debianNN:nonroot (a named Debian release), optionally with a digest", froms[1])
	}
	checkDigest(t, rt, digest)

	// The runtime user and ports are the pod's.
	_, dep, _ := base(t)
	psc := dep.Spec.Template.Spec.SecurityContext
	if want := strconv.FormatInt(*psc.RunAsUser, 10) + ":" + strconv.FormatInt(*psc.RunAsGroup, 10); user != want {
		t.Errorf("USER %q, want %s as in the Deployment", user, want)
	}
	c := gatewayContainer(t, dep)
	for _, p := range c.Ports {
		if !strings.Contains(" "+strings.Join(expose, " ")+" ", " "+strconv.Itoa(int(p.ContainerPort))+" ") {
			t.Errorf("EXPOSE %v lacks container port %s (%d)", expose, p.Name, p.ContainerPort)
		}
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) != 1 {
		t.Fatalf("ENTRYPOINT %q: want the exec form with just the binary (%v)", entrypoint, err)
	}
	copied := false
	for _, cp := range copies {
		f := strings.Fields(cp)
		copied = copied || (len(f) == 3 && strings.HasPrefix(f[0], "--from=") && f[2] == ep[0])
	}
	if !copied {
		t.Errorf("no COPY --from the build stage puts the binary at %s", ep[0])
	}

	// Run the build step as written and check the stamped version: a -X
	// naming a variable that does not exist would be silently ignored.
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/chatgate"} {
		if !strings.Contains(build, want) {
			t.Errorf("build step lacks %s: %s", want, build)
		}
	}
	out := t.TempDir()
	cmdline := strings.NewReplacer("${VERSION}", "9.9.9-test", "${REVISION}", "feedface", "/out/", out+"/").Replace(build)
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, b)
	}
	v, err := exec.Command(filepath.Join(out, path.Base(ep[0])), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(v), "9.9.9-test") || !strings.Contains(string(v), "feedface") {
		t.Errorf("the built binary's --version = %q (%v), want the VERSION and REVISION build args", v, err)
	}

	checkDockerignore(t)
}

var (
	distrolessStatic = regexp.MustCompile(`^gcr\.io/distroless/static-debian[0-9]+$`)
	sha256Digest     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// splitImage splits an image reference into its name, tag and digest
// (either may be empty).
func splitImage(ref string) (name, tag, digest string) {
	name, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	return name, tag, digest
}

// checkDigest fails for a digest that is not a sha256 (a placeholder or a
// truncated copy would make every pull fail).
func checkDigest(t *testing.T, ref, digest string) {
	t.Helper()
	if digest != "" && !sha256Digest.MatchString(digest) {
		t.Errorf("image %q: digest %q is not sha256: and 64 hex digits", ref, digest)
	}
}

// checkDockerignore fails when .dockerignore would leave out a source or
// embedded file of a package the image's binary is built from.
func checkDockerignore(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	ignored := func(rel string) bool {
		for _, p := range patterns {
			if sub, ok := strings.CutPrefix(p, "**/"); ok {
				for i := range strings.Split(rel, "/") {
					if m, _ := path.Match(sub, strings.Join(strings.Split(rel, "/")[i:], "/")); m {
						return true
					}
				}
				continue
			}
			if m, _ := path.Match(p, rel); m || strings.HasPrefix(rel, p+"/") {
				return true
			}
		}
		return false
	}
	cmd := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}|{{join .GoFiles ","}},{{join .EmbedFiles ","}}{{end}}{{end}}`, "./cmd/chatgate")
	cmd.Dir = ".."
	listed, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(listed)), "\n") {
		dir, files, _ := strings.Cut(l, "|")
		relDir, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Split(files, ",") {
			if f == "" {
				continue
			}
			n++
			if rel := filepath.ToSlash(filepath.Join(relDir, f)); ignored(rel) {
				t.Errorf(".dockerignore excludes %s, which the image's build needs", rel)
			}
		}
	}
	if n == 0 {
		t.Error("go list found no files of ./cmd/chatgate")
	}
	if !ignored("k8s/base/deployment.yaml") || !ignored("gateway/server_test.go") {
		t.Error("the ignore matcher does not work")
	}
}

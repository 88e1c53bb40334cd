package compare

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// prepare builds (or takes) the binaries and fills in what the report says
// about them.
func prepare(ctx context.Context, cfg *Config, out string, rep *Report, stderr io.Writer) (binaries, error) {
	root, err := repoRoot(cfg.Src)
	if err != nil {
		return binaries{}, err
	}
	bins := binaries{chatgate: cfg.ChatgateBin, gorilla: cfg.GorillaBin, chatbench: cfg.ChatbenchBin}
	builds := []struct {
		bin *string
		pkg string
		out string
	}{
		{&bins.chatgate, "./cmd/chatgate", "chatgate"},
		{&bins.chatbench, "./cmd/chatbench", "chatbench"},
		{&bins.gorilla, gorillaModule + "/examples/chat", "gorillachat"},
	}
	for _, b := range builds {
		if *b.bin != "" {
			abs, err := filepath.Abs(*b.bin)
			if err != nil {
				return binaries{}, err
			}
			if st, err := os.Stat(abs); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
				return binaries{}, fmt.Errorf("%s is not an executable file (for %s)", *b.bin, b.pkg)
			}
			*b.bin = abs
			continue
		}
		*b.bin = filepath.Join(out, "bin", b.out)
		fmt.Fprintf(stderr, "  building %s\n", b.pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", *b.bin, b.pkg)
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			return binaries{}, fmt.Errorf("go build %s: %v\n%s", b.pkg, err, msg)
		}
	}
	rep.describe(ctx, root)
	return bins, nil
}

// gorillaModule is the module the gorilla example is built from, at the
// version go.mod requires (from the module cache).
const gorillaModule = "github.com/gorilla/websocket"

// repoRoot finds the chatgate repository: src, or the directory holding
// the working directory's go.mod of module github.com/chatgate/chatgate.
func repoRoot(src string) (string, error) {
	dir := src
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		dir = wd
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && isChatgateModule(b) {
			return d, nil
		}
		if src != "" || filepath.Dir(d) == d {
			break
		}
	}
	return "", fmt.Errorf("%s is not in the chatgate repository (no go.mod of module github.com/chatgate/chatgate); run from it or give --src", dir)
}

func isChatgateModule(gomod []byte) bool {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return f[1] == "github.com/chatgate/chatgate"
		}
	}
	return false
}

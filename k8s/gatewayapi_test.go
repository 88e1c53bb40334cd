package k8s_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/chatgate/chatgate/gateway"
)

// renderWithGatewayAPI renders the production overlay with the gateway-api
// component added, as docs/deploy.md tells operators to.
func renderWithGatewayAPI(t *testing.T) *rendered {
	t.Helper()
	dir := t.TempDir()
	// kustomize takes only relative paths to other kustomizations.
	rel := func(p string) string {
		t.Helper()
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := filepath.Rel(dir, a)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: chatgate\n" +
		"resources:\n  - " + rel("overlays/production") + "\n" +
		"components:\n  - " + rel("components/gateway-api") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return render(t, dir)
}

// pick returns the rule a Gateway API implementation routes path to: an
// Exact match before any prefix, then the longest PathPrefix.
func pick(rules []gatewayv1.HTTPRouteRule, path string) *gatewayv1.HTTPRouteRule {
	var best *gatewayv1.HTTPRouteRule
	bestScore := -1
	for i, r := range rules {
		for _, m := range r.Matches {
			if m.Path == nil || m.Path.Value == nil {
				continue
			}
			v, score := *m.Path.Value, -1
			typ := gatewayv1.PathMatchPathPrefix
			if m.Path.Type != nil {
				typ = *m.Path.Type
			}
			switch typ {
			case gatewayv1.PathMatchExact:
				if path == v {
					score = 1 << 20
				}
			case gatewayv1.PathMatchPathPrefix:
				trimmed := strings.TrimSuffix(v, "/")
				if path == trimmed || strings.HasPrefix(path, trimmed+"/") || v == "/" {
					score = len(v)
				}
			}
			if score > bestScore {
				best, bestScore = &rules[i], score
			}
		}
	}
	return best
}

func TestGatewayAPIRoute(t *testing.T) {
	if n := len(render(t, "overlays/production").httpRoutes); n != 0 {
		t.Errorf("production has %d HTTPRoutes; the gateway-api component is opt-in", n)
	}
	r := renderWithGatewayAPI(t)
	if len(r.httpRoutes) != 1 {
		t.Fatalf("want one HTTPRoute, got %d", len(r.httpRoutes))
	}
	route := r.httpRoutes[0]
	if route.Namespace != "chatgate" {
		t.Errorf("HTTPRoute in namespace %q, want chatgate", route.Namespace)
	}
	if len(route.Spec.ParentRefs) == 0 || len(route.Spec.Hostnames) == 0 {
		t.Error("HTTPRoute needs parentRefs and hostnames (the ones operators patch)")
	}
	for _, p := range route.Spec.ParentRefs {
		if p.Kind != nil && *p.Kind != "Gateway" {
			t.Errorf("parentRef %s is a %s, want a Gateway", p.Name, *p.Kind)
		}
	}
	// Every backend is the chat Service's port that leads to the gateway's
	// http container port.
	chat := r.services["chatgate"]
	for _, rule := range route.Spec.Rules {
		for _, b := range rule.BackendRefs {
			toHTTP := false
			for _, sp := range chat.Spec.Ports {
				toHTTP = toHTTP || b.Port != nil && int32(*b.Port) == sp.Port && sp.TargetPort.String() == "http"
			}
			if (b.Kind != nil && *b.Kind != "Service") || (b.Group != nil && *b.Group != "") || string(b.Name) != chat.Name || !toHTTP {
				t.Errorf("backendRef %+v must be Service %s on its http port", b.BackendObjectReference, chat.Name)
			}
		}
	}

	ws := pick(route.Spec.Rules, gateway.WebSocketPath)
	if ws == nil {
		t.Fatalf("no rule routes %s", gateway.WebSocketPath)
	}
	// A request timeout on a WebSocket route bounds the connection's whole
	// life; "0s" disables it.
	if ws.Timeouts == nil || ws.Timeouts.Request == nil || *ws.Timeouts.Request != "0s" {
		t.Errorf("the %s rule must set timeouts.request: 0s, got %+v", gateway.WebSocketPath, ws.Timeouts)
	}
	if ws.Timeouts != nil && ws.Timeouts.BackendRequest != nil && *ws.Timeouts.BackendRequest != "0s" {
		t.Errorf("the %s rule's backendRequest timeout %s would cut WebSockets", gateway.WebSocketPath, *ws.Timeouts.BackendRequest)
	}
	for _, path := range []string{"/", "/index.html", "/wsx"} {
		page := pick(route.Spec.Rules, path)
		if page == nil {
			t.Errorf("no rule routes %s (the web page)", path)
			continue
		}
		if page == ws {
			t.Errorf("%s shares the WebSocket rule and its disabled timeout", path)
			continue
		}
		if page.Timeouts == nil || page.Timeouts.Request == nil {
			t.Errorf("page rule for %s has no request timeout", path)
			continue
		}
		d, err := time.ParseDuration(string(*page.Timeouts.Request))
		if err != nil || d <= 0 || d > time.Minute {
			t.Errorf("page rule for %s: request timeout %s, want a finite one of at most a minute", path, *page.Timeouts.Request)
		}
	}
}

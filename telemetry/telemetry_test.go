package telemetry

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestSetupChoosesExporter(t *testing.T) {
	cases := []struct {
		name     string
		env      map[string]string
		exporter string
		wantErr  string
	}{
		{"no endpoint means no exporter", nil, "none", ""},
		{"explicit none wins over an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "none", ""},
		{"endpoint defaults to http/protobuf", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp/http/protobuf", ""},
		{"traces endpoint with grpc", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "otlp/grpc", ""},
		{"traces protocol overrides the general one", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "otlp/grpc", ""},
		{"unknown protocol", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, "", "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"unsupported exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "", "OTEL_TRACES_EXPORTER"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Setup(context.Background(), "test", env(tc.env), nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			if tr.Exporter != tc.exporter {
				t.Fatalf("exporter %q; want %q", tr.Exporter, tc.exporter)
			}
			_, isNoop := tr.Provider.(noop.TracerProvider)
			_, isSDK := tr.Provider.(*sdktrace.TracerProvider)
			if (tc.exporter == "none") != isNoop || (tc.exporter != "none") != isSDK {
				t.Fatalf("provider %T for exporter %q", tr.Provider, tc.exporter)
			}
		})
	}
}

func TestResourceFromEnv(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "chat-eu")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging")
	res, err := Resource(context.Background(), "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	got := map[attribute.Key]string{}
	for _, kv := range res.Attributes() {
		got[kv.Key] = kv.Value.Emit()
	}
	for k, want := range map[attribute.Key]string{
		"service.name":                "chat-eu",
		"service.version":             "1.2.3",
		"deployment.environment.name": "staging",
	} {
		if got[k] != want {
			t.Errorf("%s = %q; want %q", k, got[k], want)
		}
	}
}

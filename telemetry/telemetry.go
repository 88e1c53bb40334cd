// Package telemetry sets up OpenTelemetry tracing for chatgate from the
// standard OTEL_* environment variables.
//
// With no OTLP endpoint configured (neither OTEL_EXPORTER_OTLP_ENDPOINT nor
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), or with OTEL_TRACES_EXPORTER=none, no
// exporter is created and tracing costs nothing: the provider is a no-op.
// Otherwise spans go to an OTLP exporter speaking the protocol named by
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
// ("http/protobuf", the default, or "grpc"); the exporter itself reads the
// endpoint, headers, TLS and timeout variables. The sampler comes from
// OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG and the resource from
// OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, as the SDK defines them.
// W3C trace-context and baggage propagation are installed globally.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is the process's tracer provider and how to flush it.
type Tracing struct {
	Provider trace.TracerProvider
	// Exporter names what spans are sent to ("none", "otlp/grpc",
	// "otlp/http/protobuf"), for the start-up log.
	Exporter string
	shutdown func(context.Context) error
}

// Shutdown flushes buffered spans and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Setup builds the tracer provider described by the environment (looked up
// with getenv), installs the W3C propagators, and sends OpenTelemetry's own
// errors (an unreachable collector, say) to log.
func Setup(ctx context.Context, version string, getenv func(string) string, log *slog.Logger) (*Tracing, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if log != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("opentelemetry", "err", err) }))
	}

	exporterKind := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") + getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	if exporterKind == "none" || (exporterKind == "" || exporterKind == "otlp") && endpoint == "" {
		return &Tracing{Provider: noop.NewTracerProvider(), Exporter: "none"}, nil
	}
	if exporterKind != "" && exporterKind != "otlp" {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", exporterKind)
	}
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if proto == "" {
		proto = "http/protobuf"
	}
	var exp sdktrace.SpanExporter
	var err error
	switch proto {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: use grpc or http/protobuf", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := Resource(ctx, version)
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, Exporter: "otlp/" + proto, shutdown: tp.Shutdown}, nil
}

// Resource describes this process: service.name defaults to "chatgate"
// and service.version to version; OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override them.
func Resource(ctx context.Context, version string) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("chatgate"), semconv.ServiceVersion(version)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return res, nil
}

//! OpenTelemetry traces, exported over OTLP/gRPC when an endpoint is set: every
//! `tracing` span of the process (REST requests, gRPC calls, store operations,
//! notifications) becomes an OpenTelemetry span of the service `zaqar-<role>`. Off
//! unless `--otlp-endpoint` (or `ZAQAR_OTLP_ENDPOINT`) is set. Sampling is decided
//! where a trace starts (`--trace-sample-ratio`, default 1.0: every trace) and
//! followed downstream (parent-based), so a trace is kept whole or not at all. The
//! W3C trace context travels between processes (see `zaqar_proto::trace`). Spans
//! leave in batches (every 5 s, or `OTEL_BSP_SCHEDULE_DELAY` ms); the last ones are
//! sent when the process stops.

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, TracerProvider};
use opentelemetry_sdk::{runtime, Resource};

/// Where and how often traces go.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// The OTLP/gRPC endpoint (`http://collector:4317`).
    pub endpoint: String,
    /// The share of traces started here that are kept, in [0, 1].
    pub sample_ratio: f64,
}

/// The exporter's provider: kept until the process stops, then shut down to send
/// what is left.
pub struct Traces {
    provider: TracerProvider,
}

impl Traces {
    /// A provider exporting to `settings.endpoint` as `service`, and the tracer the
    /// `tracing` layer uses.
    pub fn start(
        settings: &TraceSettings,
        service: &str,
    ) -> Result<(Traces, opentelemetry_sdk::trace::Tracer)> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&settings.sample_ratio),
            "trace_sample_ratio {} is not in [0, 1]",
            settings.sample_ratio
        );
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .build()
            .with_context(|| format!("the OTLP exporter to {}", settings.endpoint))?;
        let sampler =
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
        let provider = TracerProvider::builder()
            .with_batch_exporter(exporter, runtime::Tokio)
            .with_sampler(sampler)
            .with_resource(Resource::new([KeyValue::new(
                "service.name",
                service.to_string(),
            )]))
            .build();
        let tracer = provider.tracer("zaqar-rs");
        Ok((Traces { provider }, tracer))
    }

    /// Sends the spans not sent yet and stops the exporter.
    pub async fn stop(self) {
        let provider = self.provider;
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(err)) = stopped {
            eprintln!("traces: the last spans were not sent: {err}");
        }
    }
}

//! OpenTelemetry traces, exported over OTLP/gRPC when an endpoint is set: every
//! `tracing` span of the process (REST requests, gRPC calls, store operations,
//! notifications) becomes an OpenTelemetry span of the service `zaqar-<role>`. Off
//! unless `--otlp-endpoint` (or `ZAQAR_OTLP_ENDPOINT`) is set. Sampling is decided
//! where a trace starts (`--trace-sample-ratio`, default 1.0: every trace) and
//! followed downstream, so a trace is kept whole or not at all; the spans of a
//! trace not kept never reach the exporter's layer ([`SampledOnly`]). The W3C
//! trace context travels between processes (see `zaqar_proto::trace`). Spans leave
//! in batches (every 5 s, or `OTEL_BSP_SCHEDULE_DELAY` ms); the last ones are sent
//! when the process stops.

use anyhow::{Context as _, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, TracerProvider};
use opentelemetry_sdk::{runtime, Resource};
use tracing::level_filters::LevelFilter;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

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
        // What reaches the exporter is sampled already (`SampledOnly`).
        let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
        zaqar_proto::trace::enable(settings.sample_ratio);
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

/// The filter of the exporter's layer: it sees the spans (of level INFO or above)
/// of sampled traces only, and the events inside them. A span inside another is
/// seen when that one is; a span outside of any is seen when it starts a trace
/// that `zaqar_proto::trace` keeps. A span not seen costs the exporter nothing, and
/// when the logs do not want it either, it is not made at all.
pub struct SampledOnly;

impl<S> Filter<S> for SampledOnly
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if *metadata.level() > tracing::Level::INFO {
            return false;
        }
        match cx.current_span().id() {
            // `cx` is this filter's view: it finds the span only if it was seen.
            Some(current) => cx.span(current).is_some(),
            None => metadata.is_span() && zaqar_proto::trace::root_is_sampled(),
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    use super::*;

    /// Records the names of the spans and events it sees.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(attrs.metadata().name().to_string());
        }

        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(format!("event {}", event.metadata().level()));
        }
    }

    #[test]
    fn only_the_spans_of_sampled_traces_and_their_events_are_seen() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone().with_filter(SampledOnly));
        tracing::subscriber::with_default(subscriber, || {
            let kept = zaqar_proto::trace::start(true, || tracing::info_span!("kept"));
            kept.in_scope(|| {
                tracing::info_span!("kept child").in_scope(|| tracing::info!("inside"));
                tracing::debug_span!("debug child").in_scope(|| {});
            });
            let dropped = zaqar_proto::trace::start(false, || tracing::info_span!("dropped"));
            dropped.in_scope(|| {
                tracing::info_span!("dropped child").in_scope(|| tracing::info!("inside"));
            });
            tracing::info!("outside");
            tracing::info_span!("outside of any trace").in_scope(|| {});
        });
        assert_eq!(
            *seen.0.lock().unwrap(),
            ["kept", "kept child", "event INFO"]
        );
    }
}

//! Trace context across processes: the W3C `traceparent` (and `tracestate`) of a
//! request is read from its HTTP headers or gRPC metadata and becomes the parent of
//! the span that handles it, and the current span's context is written into the
//! calls it makes (gRPC metadata, webhook headers), so that a post's spans in the
//! api-node, the pool-node and its webhook delivery make one trace. With tracing off
//! (no OpenTelemetry layer installed, see `ops`), spans carry no context and these
//! functions read and write nothing.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The headers (and gRPC metadata keys) that carry a trace context.
pub const HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// The trace headers a request carries.
struct Found(Vec<(&'static str, String)>);

impl Extractor for Found {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        HEADERS.to_vec()
    }
}

struct Collect(Vec<(&'static str, String)>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        if let Some(name) = HEADERS.iter().find(|name| **name == key) {
            self.0.push((name, value));
        }
    }
}

/// Makes the trace context found by `get` (a header lookup) the parent of `span`,
/// when there is one; `span` stays where it is otherwise.
pub fn adopt<'a>(span: &tracing::Span, get: impl Fn(&str) -> Option<&'a str>) {
    if get(HEADERS[0]).is_none() {
        return;
    }
    let found = HEADERS
        .iter()
        .filter_map(|name| Some((*name, get(name)?.to_string())))
        .collect();
    let parent = TraceContextPropagator::new().extract(&Found(found));
    if parent.span().span_context().is_valid() {
        span.set_parent(parent);
    }
}

/// The headers that carry the context of the current span to another process
/// (none when tracing is off).
pub fn outgoing() -> Vec<(&'static str, String)> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut headers = Collect(Vec::new());
    TraceContextPropagator::new().inject_context(&context, &mut headers);
    headers.0
}

/// The trace id of `span` in hex, when it has one.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The span of one gRPC call a server handles (`path` is `/package.Service/Method`),
/// a child of the caller's span when its metadata carries one.
pub fn grpc_span<'a>(path: &str, get: impl Fn(&str) -> Option<&'a str>) -> tracing::Span {
    let span = tracing::info_span!("grpc", rpc = %path, trace_id = tracing::field::Empty);
    adopt(&span, get);
    if let Some(id) = trace_id(&span) {
        span.record("trace_id", id.as_str());
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_read_or_written_while_tracing_is_off() {
        let span = tracing::info_span!("test");
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        adopt(&span, |name| (name == "traceparent").then_some(parent));
        let _entered = span.enter();
        assert!(outgoing().is_empty());
        assert_eq!(trace_id(&span), None);
    }
}

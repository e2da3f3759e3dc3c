//! Trace context across processes: the W3C `traceparent` (and `tracestate`) of a
//! request is read from its HTTP headers or gRPC metadata and becomes the parent of
//! the span that handles it, and the current span's context is written into the
//! calls it makes (gRPC metadata, webhook headers), so that a post's spans in the
//! api-node, the pool-node and its webhook delivery make one trace. With tracing off
//! (no OpenTelemetry layer installed, see `ops`), spans carry no context and these
//! functions read and write nothing.
//!
//! Sampling is decided once per trace, where it starts, before its first span is
//! built ([`start`]): a trace that is not kept never reaches the exporter's layer
//! (its filter in `ops` asks [`root_is_sampled`]), so it costs next to nothing.
//! Calls out of a trace that is not kept carry a `traceparent` saying so (a fresh
//! trace id, flags `00`), for the next process to drop its part too: a trace is
//! kept whole or not at all.

use std::cell::Cell;
use std::sync::OnceLock;

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

/// The headers that carry the context of the current span to another process:
/// none when tracing is off, a `traceparent` of a trace not sampled when the
/// current span is in none that is kept.
pub fn outgoing() -> Vec<(&'static str, String)> {
    if RATIO.get().is_none() {
        return Vec::new();
    }
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        let ids: (u128, u64) = (rand::random(), rand::random());
        let not_sampled = format!("00-{:032x}-{:016x}-00", ids.0 | 1, ids.1 | 1);
        return vec![(HEADERS[0], not_sampled)];
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
    continue_trace(
        get,
        || tracing::info_span!("grpc", rpc = %path, trace_id = tracing::field::Empty),
    )
}

/// The span `make` creates (with an empty `trace_id` field), as the first span of
/// this process in a trace: it continues the trace of the `traceparent` found by
/// `get` (a header lookup) when there is one, and is kept when that trace is
/// sampled, or as the sample ratio draws when the trace starts here. Its
/// `trace_id` field (in log lines) is set when it is kept.
pub fn continue_trace<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    if RATIO.get().is_none() {
        return make();
    }
    let parent = get(HEADERS[0]);
    let sampled = match parent.and_then(sampled_flag) {
        Some(sampled) => sampled,
        None => draw(),
    };
    let span = start(sampled, make);
    if sampled {
        if parent.is_some() {
            adopt(&span, get);
        }
        if let Some(id) = trace_id(&span) {
            span.record("trace_id", id.as_str());
        }
    }
    span
}

/// The share of the traces starting here that are kept, once tracing is on.
static RATIO: OnceLock<f64> = OnceLock::new();

thread_local! {
    /// Whether the span being made by [`start`] on this thread is kept.
    static STARTING: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Turns tracing on in this process, keeping `ratio` (in [0, 1]) of the traces
/// that start here; called once, by the process that exports spans.
pub fn enable(ratio: f64) {
    let _ = RATIO.set(ratio);
}

/// The span `make` creates, kept (seen by the exporter, with the spans made inside
/// it) when `sampled`, or not at all.
pub fn start(sampled: bool, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    STARTING.with(|starting| starting.set(Some(sampled)));
    let span = make();
    STARTING.with(|starting| starting.set(None));
    span
}

/// Whether a span made outside of any other is kept: as [`start`] says while it
/// makes one; never otherwise (a span outside of every trace a request or a
/// delivery started, or inside one not kept whose spans were not made at all).
pub fn root_is_sampled() -> bool {
    STARTING.with(Cell::get).unwrap_or(false)
}

/// A draw of the sample ratio.
fn draw() -> bool {
    let ratio = RATIO.get().copied().unwrap_or(0.0);
    ratio >= 1.0 || rand::random::<f64>() < ratio
}

/// The sampled flag of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`),
/// or None when it is not a valid one.
fn sampled_flag(traceparent: &str) -> Option<bool> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    let zero = |part: &str| part.bytes().all(|b| b == b'0');
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && !zero(trace)
        && hex(span, 16)
        && !zero(span)
        && hex(flags, 2);
    valid.then(|| u8::from_str_radix(flags, 16).is_ok_and(|flags| flags & 1 == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampled_flag_is_read_from_a_valid_traceparent_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            sampled_flag(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(true)
        );
        assert_eq!(
            sampled_flag(&format!("00-{id}-00f067aa0ba902b7-00")),
            Some(false)
        );
        assert_eq!(
            sampled_flag(&format!("00-{id}-00f067aa0ba902b7-03")),
            Some(true)
        );
        for invalid in [
            String::new(),
            "garbage".to_string(),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{id}-0000000000000000-01"),
            format!("00-{id}-00f067aa0ba902b7"),
            format!("00-{id}x-00f067aa0ba902b7-01"),
        ] {
            assert_eq!(sampled_flag(&invalid), None, "{invalid}");
        }
    }

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

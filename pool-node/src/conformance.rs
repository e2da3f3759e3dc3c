//! Placeholder: the conformance suite run against every backend.

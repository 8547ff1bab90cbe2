//! openclaw-trace: a small sidecar that captures what an AI agent does, what it
//! costs and how healthy its host is. Data flows one way:
//! sources → pipeline → store → sinks; the HTTP API is one more source and the query surface.

pub mod analytics;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod redact;
pub mod settings;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod util;

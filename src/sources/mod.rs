//! Sources: everything that produces records for the pipeline.
pub mod host;
pub mod ingest;
pub mod otlp;
pub mod tail;

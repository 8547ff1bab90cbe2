//! Sources: everything that produces records for the pipeline.
pub mod fleet;
pub mod gateway;
pub mod host;
pub mod ingest;
pub mod openclaw;
pub mod openclaw_gateway;
pub mod otlp;
pub mod tail;
pub mod transcripts;

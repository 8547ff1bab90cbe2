//! Sinks: components that read the store by their own cursor and ship it elsewhere.
pub mod live;
pub mod push;

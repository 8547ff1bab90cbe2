//! Small helpers shared by every component.
pub mod digest;
pub mod duration;
pub mod hex;
pub mod id_hash;
pub mod time;

//! Small helpers shared by every component.
pub mod digest;
pub mod dns;
pub mod duration;
pub mod fast_hash;
pub mod heap;
pub mod hex;
pub mod listen;
pub mod time;

//! The wall clock in the one form nxops stores and sends: milliseconds since the
//! Unix epoch. A leaf: every layer may use it, and it uses nothing of nxops.

use std::time::SystemTime;

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

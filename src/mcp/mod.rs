//! Pools of warm stdio MCP servers per workspace (see ARCHITECTURE.md, "MCP pools").

pub mod config;
pub mod conn;
pub mod pool;

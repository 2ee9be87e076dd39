//! Which MCP servers a workspace has: read from the files users already have.

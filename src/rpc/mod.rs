//! JSON-RPC transport: LSP framing, message parsing, the serve loop around
//! tower-lsp-server's `LspService`, a client, and error mapping. Nothing here
//! knows what nxops methods do.

pub mod client;
pub mod errors;
pub mod frame;
pub mod message;
pub mod outbox;
pub mod transport;

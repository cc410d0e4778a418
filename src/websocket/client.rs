//! The client's side of WebSocket framing (masked frames out, the server's frames in), for load
//! generators and tests.

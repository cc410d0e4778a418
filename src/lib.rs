//! robochat: a chat-robot server built as an event-loop server.
//!
//! Clients connect over TCP, send lines `USERNAME::TEXT`, and get one reply line from a robot for
//! each. One single-threaded [mio] loop owns every socket; robot lookups run on a small fixed
//! pool of worker threads that wake the loop when answers are ready. An idle connection costs a
//! socket and a few words of memory, no buffers.
//!
//! # Embedding
//!
//! ```no_run
//! use robochat::{Robot, RobotError, Server};
//!
//! /// A robot of your own: anything `Send + Sync` that turns a message into a reply.
//! struct Shouter;
//!
//! impl Robot for Shouter {
//!     fn name(&self) -> &str {
//!         "shouter"
//!     }
//!     fn reply(&self, user: &str, text: &str) -> Result<String, RobotError> {
//!         Ok(format!("{user}, you said: {}", text.to_uppercase()))
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let server = Server::builder()
//!         .listen("127.0.0.1:0")
//!         .robot(Shouter)
//!         .workers(4)
//!         .build()?;
//!     println!("chat with me on {}", server.local_addr());
//!     let handle = server.handle(); // call handle.shutdown() from any thread to stop
//!     # handle.shutdown();
//!     server.run()?;
//!     Ok(())
//! }
//! ```
//!
//! A runnable version is `examples/custom_robot.rs`.
//!
//! # Layout
//!
//! `ARCHITECTURE.md` at the top of the repository is the full map; in short:
//!
//! - [`protocol`]: the framer (bytes → messages, with the line limit and the tutorial-client
//!   rule, driven by [`Framer::next`](protocol::Framer::next)), message and reply encoding,
//!   username checks. Pure: no I/O.
//! - [`proxy_protocol`]: the PROXY protocol header parser, for servers behind a load balancer.
//!   Pure too.
//! - [`server`]: [`Server`], [`ServerBuilder`], [`ServerHandle`], [`BuildError`]. Inside (not
//!   public): the event loop, the dispatch of a connection's messages, the connection state,
//!   its id, timeouts, the worker pool, the listening socket, and the metrics endpoint.
//! - [`robot`]: the [`Robot`] trait, the embedded and echo robots, fallback chains, and the web
//!   robots (feature `http`).
//! - [`limits`], [`signals`] and [`systemd`]: process set-up for a server binary (open-file
//!   limit, SIGINT and SIGTERM, readiness for systemd).
//! - [`clock`]: local time, for the embedded robot and the chat client.
//!
//! With `--no-default-features` the library depends only on mio, slab, crossbeam-channel, log,
//! libc and socket2. The `http` feature adds the web robots in [`robot::http`] (ureq,
//! serde_json), and the `cli` feature the `robochat` command line.

pub mod clock;
pub mod limits;
pub mod protocol;
pub mod proxy_protocol;
pub mod robot;
pub mod server;
pub mod signals;
pub mod systemd;
mod text;
#[cfg(feature = "web")]
pub mod web;
pub mod websocket;

pub use protocol::Framing;
pub use robot::{EchoRobot, EmbeddedRobot, Robot, RobotError};
pub use server::{BuildError, Server, ServerBuilder, ServerHandle, DEFAULT_GREETING};

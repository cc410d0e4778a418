//! The `robochat` command line: `serve` runs the server, `chat` talks to one, `bench` loads one.

mod args;
mod bench;
mod chat;
mod logging;
mod robots;
mod serve;

use std::process::ExitCode;

const USAGE: &str = "\
robochat: a chat-robot server. Clients send lines USERNAME::TEXT and a robot answers each.

Usage: robochat <COMMAND> [OPTIONS]

Commands:
  serve   Run the server (default address 127.0.0.1:9999)
  chat    Chat with a server from this terminal (or from piped input)
  bench   Load-test a server: messages per second, latency percentiles, memory per connection

Run `robochat <COMMAND> --help` for a command's options.

Quick start:
  robochat serve              # in one terminal
  robochat chat --user alice  # in another; type a message, `exit` to quit
";

fn main() -> ExitCode {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next() {
        Ok(Some(lexopt::Arg::Value(command))) => command.to_string_lossy().into_owned(),
        Ok(Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help"))) | Ok(None) => {
            args::print_text(USAGE.trim_end());
            return ExitCode::SUCCESS;
        }
        Ok(Some(lexopt::Arg::Short('V') | lexopt::Arg::Long("version"))) => {
            args::print_text(concat!("robochat ", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Ok(Some(other)) => return usage_error(&other.unexpected().to_string()),
        Err(e) => return usage_error(&e.to_string()),
    };
    let outcome = match command.as_str() {
        "serve" => serve::main(parser),
        "chat" => chat::main(parser),
        "bench" => bench::main(parser),
        "help" => {
            args::print_text(USAGE.trim_end());
            return ExitCode::SUCCESS;
        }
        other => return usage_error(&format!("unknown command '{other}'")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(args::Failure::Usage(why)) => usage_error(&why),
        Err(args::Failure::Runtime(why)) => {
            eprintln!("robochat {command}: {why}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(why: &str) -> ExitCode {
    eprintln!("robochat: {why}\nRun `robochat --help` for usage.");
    ExitCode::from(2)
}

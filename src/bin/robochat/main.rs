//! The `robochat` command line: `serve` runs the server, `chat` talks to one, `bench` loads one.

mod args;
mod bench;
mod chat;
mod logging;
mod robots;
mod serve;

use std::process::ExitCode;

const SHORT_USAGE: &str = "Usage: robochat <serve|chat|bench> [OPTIONS]";

const USAGE: &str = "\
robochat: a chat-robot server. Clients send lines USERNAME::TEXT and a robot answers each.

Usage: robochat <COMMAND> [OPTIONS]

Commands:
  serve   Run the server (default address 127.0.0.1:9999)
  chat    Chat with a server from this terminal (or from piped input)
  bench   Load-test a server: messages per second, latency percentiles, memory per connection

Run `robochat <COMMAND> --help` (or `robochat help <COMMAND>`) for a command's options.

Quick start:
  robochat serve              # in one terminal
  robochat chat --user alice  # in another; type a message, `exit` to quit
";

/// The commands, each with its runner and its `--help` text.
const COMMANDS: [(&str, Runner, &str); 3] = [
    ("serve", serve::main, serve::HELP),
    ("chat", chat::main, chat::HELP),
    ("bench", bench::main, bench::HELP),
];

type Runner = fn(lexopt::Parser) -> Result<(), args::Failure>;

fn main() -> ExitCode {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next() {
        Ok(Some(lexopt::Arg::Value(command))) => command.to_string_lossy().into_owned(),
        Ok(Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help"))) => {
            args::print_text(USAGE.trim_end());
            return ExitCode::SUCCESS;
        }
        Ok(Some(lexopt::Arg::Short('V') | lexopt::Arg::Long("version"))) => {
            args::print_text(concat!("robochat ", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        // No command is a usage error, as with git or cargo: a short reminder, status 2.
        Ok(None) => return usage_error("a command is needed: serve, chat or bench", None),
        Ok(Some(other)) => return usage_error(&other.unexpected().to_string(), None),
        Err(e) => return usage_error(&e.to_string(), None),
    };
    if command == "help" {
        return help(parser);
    }
    let Some(&(name, run, _)) = COMMANDS.iter().find(|(name, _, _)| *name == command) else {
        return usage_error(&format!("unknown command '{command}'"), None);
    };
    match run(parser) {
        Ok(()) => ExitCode::SUCCESS,
        Err(args::Failure::Usage(why)) => usage_error(&why, Some(name)),
        Err(args::Failure::Runtime(why)) => {
            eprintln!("robochat {name}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// `robochat help [COMMAND]`: the help of the command named, or the overview.
fn help(mut parser: lexopt::Parser) -> ExitCode {
    match parser.next() {
        Ok(None) => args::print_text(USAGE.trim_end()),
        Ok(Some(lexopt::Arg::Value(topic))) => {
            let topic = topic.to_string_lossy();
            match COMMANDS.iter().find(|(name, _, _)| *name == topic) {
                Some((_, _, text)) => args::print_text(text),
                None => {
                    return usage_error(&format!("no help for '{topic}': no such command"), None)
                }
            }
        }
        Ok(Some(other)) => return usage_error(&other.unexpected().to_string(), None),
        Err(e) => return usage_error(&e.to_string(), None),
    }
    ExitCode::SUCCESS
}

/// Reports a bad command line on stderr, with where to read more, and exits with status 2.
fn usage_error(why: &str, command: Option<&str>) -> ExitCode {
    match command {
        Some(command) => {
            eprintln!("robochat {command}: {why}\nRun `robochat {command} --help` for its options.")
        }
        None => eprintln!("robochat: {why}\n\n{SHORT_USAGE}\nRun `robochat --help` for more."),
    }
    ExitCode::from(2)
}

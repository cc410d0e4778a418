//! Small helpers shared by the subcommands' argument parsers.

use std::fmt::Display;
use std::str::FromStr;

/// How a subcommand failed: a bad command line (exit status 2) or a failure while running (1).
pub enum Failure {
    Usage(String),
    Runtime(String),
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Self {
        Failure::Usage(e.to_string())
    }
}

/// The value of option `--name`, parsed, with an error that names the option.
pub fn value<T>(parser: &mut lexopt::Parser, name: &str) -> Result<T, Failure>
where
    T: FromStr,
    T::Err: Display,
{
    let raw = parser.value()?;
    let text = raw
        .to_str()
        .ok_or_else(|| Failure::Usage(format!("the value of --{name} is not valid UTF-8")))?;
    text.parse()
        .map_err(|e| Failure::Usage(format!("invalid value '{text}' for --{name}: {e}")))
}

/// The value of option `--name` as a number of seconds, fractions allowed, at most `max`.
pub fn seconds(
    parser: &mut lexopt::Parser,
    name: &str,
    max: std::time::Duration,
) -> Result<std::time::Duration, Failure> {
    let secs: f64 = value(parser, name)?;
    if !(secs >= 0.0 && secs <= max.as_secs_f64()) {
        return Err(Failure::Usage(format!(
            "--{name} must be between 0 and {} seconds",
            max.as_secs()
        )));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Prints `text` and a newline on stdout, ignoring a closed stdout (`robochat --help | head`),
/// where `println!` would panic.
pub fn print_text(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

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

/// A size in bytes as flags take it: a number, with an optional suffix K, M or G (also KiB,
/// MiB, GiB; all powers of 1024), such as `64M` or `65536`.
pub struct Bytes(pub usize);

impl FromStr for Bytes {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let number: usize = number
            .parse()
            .map_err(|_| "expected a size such as 64M or 65536".to_owned())?;
        let shift = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KB" | "KIB" => 10,
            "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            _ => return Err(format!("unknown unit '{unit}': use K, M or G")),
        };
        number
            .checked_mul(1 << shift)
            .map(Bytes)
            .ok_or_else(|| "too large".to_owned())
    }
}

/// Prints `text` and a newline on stdout, ignoring a closed stdout (`robochat --help | head`),
/// where `println!` would panic.
pub fn print_text(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::Bytes;

    #[test]
    fn sizes() {
        let bytes = |text: &str| text.parse::<Bytes>().map(|b| b.0);
        assert_eq!(bytes("65536"), Ok(65536));
        assert_eq!(bytes("64M"), Ok(64 << 20));
        assert_eq!(bytes("64MiB"), Ok(64 << 20));
        assert_eq!(bytes("2k"), Ok(2048));
        assert_eq!(bytes("1G"), Ok(1 << 30));
        assert!(bytes("64X").is_err());
        assert!(bytes("M").is_err());
        assert!(bytes("-1").is_err());
    }
}

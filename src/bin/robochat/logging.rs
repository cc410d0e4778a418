//! The log of `robochat serve`: `RUST_LOG` checked before it is used, and the HTTP client's
//! logging capped.
//!
//! env_logger reads any word it does not know as the name of a module to log, so a mistyped
//! level (`RUST_LOG=verbose`) would silently turn off every line, the start-up line included.
//! Here a directive must be a level, `module=level`, or the name of a module of this program;
//! anything else is reported and the log falls back to `info`.

use std::str::FromStr;

use log::LevelFilter;

/// The level when `RUST_LOG` is not set (or not valid).
const DEFAULT_SPEC: &str = "info";

/// The crates whose modules log in this program: a bare directive must name one of them.
const LOGGING_CRATES: [&str; 4] = ["robochat", "ureq", "ureq_proto", "mio"];

/// ureq logs whole request URLs at `trace`, and a Tuling v1 URL carries its key (and the user's
/// text): its modules never log below `debug`, whatever `RUST_LOG` asks for.
const HTTP_CLIENT_MODULES: [&str; 2] = ["ureq", "ureq_proto"];

/// Starts the log from `RUST_LOG` (`RUST_LOG_STYLE` sets colours, as env_logger documents).
pub fn init() {
    let raw = std::env::var("RUST_LOG").ok();
    let (spec, complaint) = match raw.as_deref().map(str::trim) {
        None | Some("") => (effective_spec(DEFAULT_SPEC), None),
        Some(given) => match parse(given) {
            Ok(directives) => (render(&capped(directives)), None),
            Err(why) => (
                effective_spec(DEFAULT_SPEC),
                Some(format!(
                    "RUST_LOG={given:?} is not valid ({why}); logging at info. Use a level \
                     (error, warn, info, debug, trace, off) or module=level pairs such as \
                     robochat=debug"
                )),
            ),
        },
    };
    env_logger::Builder::from_env(env_logger::Env::new().write_style("RUST_LOG_STYLE"))
        .parse_filters(&spec)
        .init();
    if let Some(complaint) = complaint {
        log::warn!("{complaint}");
    }
}

/// One directive: a level for every module (`name` is `None`) or for one module and those in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Directive {
    name: Option<String>,
    level: LevelFilter,
}

/// Parses a `RUST_LOG` value: comma-separated `level`, `module` or `module=level`.
fn parse(spec: &str) -> Result<Vec<Directive>, String> {
    if spec.contains('/') {
        return Err("message filters (`/…`) are not supported".into());
    }
    let mut directives = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let directive = match part.split_once('=') {
            Some((name, level)) => Directive {
                name: Some(module_name(name.trim())?),
                level: level_named(level.trim())?,
            },
            None => match LevelFilter::from_str(part) {
                Ok(level) => Directive { name: None, level },
                // A bare module name logs everything of that module.
                Err(_) => Directive {
                    name: Some(module_name(part).map_err(|_| {
                        format!(
                            "'{part}' is neither a level (error, warn, info, debug, trace, off) \
                             nor a module of robochat"
                        )
                    })?),
                    level: LevelFilter::Trace,
                },
            },
        };
        directives.push(directive);
    }
    if directives.is_empty() {
        return Err("it names no level".into());
    }
    Ok(directives)
}

fn level_named(level: &str) -> Result<LevelFilter, String> {
    LevelFilter::from_str(level)
        .map_err(|_| format!("'{level}' is not a level (error, warn, info, debug, trace, off)"))
}

fn module_name(name: &str) -> Result<String, String> {
    let first = name.split("::").next().unwrap_or_default();
    if LOGGING_CRATES.contains(&first) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "'{name}' is not a module of robochat (modules start with {})",
            LOGGING_CRATES.join(", ")
        ))
    }
}

/// The level env_logger gives `target`: that of the longest directive naming it or a module
/// it is in, else that of the directive without a name, else off.
fn level_for(directives: &[Directive], target: &str) -> LevelFilter {
    let covers = |name: &str| {
        target == name || target.starts_with(name) && target[name.len()..].starts_with("::")
    };
    directives
        .iter()
        .filter_map(|d| match &d.name {
            Some(name) if covers(name) => Some((name.len(), d.level)),
            Some(_) => None,
            None => Some((0, d.level)),
        })
        .max_by_key(|&(len, _)| len)
        .map_or(LevelFilter::Off, |(_, level)| level)
}

/// `directives` with the HTTP client's modules capped at `debug`, at most what was asked.
fn capped(mut directives: Vec<Directive>) -> Vec<Directive> {
    for module in HTTP_CLIENT_MODULES {
        let level = level_for(&directives, module).min(LevelFilter::Debug);
        for d in &mut directives {
            if d.name.as_deref().is_some_and(|n| n.starts_with(module)) {
                d.level = d.level.min(LevelFilter::Debug);
            }
        }
        directives.retain(|d| d.name.as_deref() != Some(module));
        directives.push(Directive {
            name: Some(module.to_owned()),
            level,
        });
    }
    directives
}

fn effective_spec(spec: &str) -> String {
    render(&capped(parse(spec).expect("the default log spec is valid")))
}

/// Back to the text env_logger parses.
fn render(directives: &[Directive]) -> String {
    directives
        .iter()
        .map(|d| match &d.name {
            Some(name) => format!("{name}={}", d.level),
            None => d.level.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effective(spec: &str) -> Result<String, String> {
        parse(spec).map(|d| render(&capped(d)))
    }

    #[test]
    fn levels_and_modules_are_accepted() {
        assert_eq!(
            effective("debug").unwrap(),
            "DEBUG,ureq=DEBUG,ureq_proto=DEBUG"
        );
        assert_eq!(effective("INFO").unwrap(), "INFO,ureq=INFO,ureq_proto=INFO");
        assert_eq!(
            effective("warn,robochat=debug").unwrap(),
            "WARN,robochat=DEBUG,ureq=WARN,ureq_proto=WARN"
        );
        assert_eq!(
            effective("robochat::server").unwrap(),
            "robochat::server=TRACE,ureq=OFF,ureq_proto=OFF"
        );
    }

    #[test]
    fn the_http_client_never_logs_below_debug() {
        assert_eq!(
            effective("trace").unwrap(),
            "TRACE,ureq=DEBUG,ureq_proto=DEBUG"
        );
        assert_eq!(
            effective("info,ureq=trace,ureq::unversioned=trace").unwrap(),
            "INFO,ureq::unversioned=DEBUG,ureq=DEBUG,ureq_proto=INFO"
        );
        assert_eq!(
            effective("error").unwrap(),
            "ERROR,ureq=ERROR,ureq_proto=ERROR"
        );
    }

    #[test]
    fn a_word_that_is_no_level_is_refused() {
        let why = effective("verbose").unwrap_err();
        assert!(why.contains("'verbose' is neither a level"), "{why}");
        assert!(effective("robochat=loud").unwrap_err().contains("'loud'"));
        assert!(effective("serde=debug").is_err());
        assert!(effective(",").is_err());
        assert!(effective("info/accepted").is_err());
    }

    #[test]
    fn the_most_specific_directive_decides() {
        let d = parse("warn,ureq=error,ureq::pool=debug").unwrap();
        assert_eq!(level_for(&d, "ureq"), LevelFilter::Error);
        assert_eq!(level_for(&d, "ureq::pool::x"), LevelFilter::Debug);
        assert_eq!(level_for(&d, "ureqx"), LevelFilter::Warn);
        assert_eq!(level_for(&d, "robochat"), LevelFilter::Warn);
    }
}

//! The systemd unit, `deploy/robochat.service`, rated by `systemd-analyze security`: its
//! sandboxing must not get weaker than it was made.
//!
//! It needs `systemd-analyze` (Debian's `systemd` package, which `.ci/run` installs; no running
//! systemd is needed), so it is not part of a plain `cargo test`: run it with
//! `cargo test --test deploy -- --ignored`.

use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/robochat.service");

/// The exposure level the unit was hardened to, as systemd 252 rates it (0 is best, 10 worst).
/// The unit's header comment quotes it.
const REACHED: f64 = 1.1;

#[test]
#[ignore = "needs systemd-analyze; .ci/run installs it and runs this"]
fn the_systemd_unit_stays_as_sandboxed_as_it_was_made() {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", UNIT])
        .output()
        .expect("systemd-analyze is not installed: `apt-get install systemd` (or run .ci/run)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "systemd-analyze security: {}\n{report}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // "→ Overall exposure level for robochat.service: 1.1 OK 🙂"
    let overall = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for robochat.service:")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{report}"));
    let score: f64 = overall
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {overall:?}"));
    let exposed: Vec<&str> = report.lines().filter(|l| l.starts_with('✗')).collect();
    assert!(
        score <= REACHED,
        "deploy/robochat.service is rated {score}, worse than the {REACHED} it was hardened \
         to; what it does not restrict:\n{}",
        exposed.join("\n")
    );

    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(
        unit.contains(&format!("is {REACHED:.1} ")),
        "the unit's header does not quote the exposure level {REACHED:.1}"
    );
}

//! Tests of rules parsing, checking and templates, on small rules written here.
//!
//! They must not depend on the default rules (`src/robot/default.rules`), which the embedded
//! robot's own tests cover.

use super::*;
use crate::clock::LocalTime;
use crate::robot::embedded::tests::NOW;

/// The built-in sections, minimal, to append to rules under test.
const BUILT_IN_SECTIONS: &str = "
[@arithmetic]
zh = {expr} = {result}
en = {expr} = {result}
zh.div-zero = 不能除以零
en.div-zero = cannot divide by zero
zh.too-big = 太大
en.too-big = too big
zh.too-complex = 太复杂
en.too-complex = too complex
[@recall-name]
match = what is my name
zh = 你叫{name}
en = you are {name}
zh.unknown = 不知道
en.unknown = no idea
[@set-name]
match = my name is
zh = 好的{name}
en = ok {name}
[@fallback]
zh = 嗯：{text}
en = hm: {text}
zh.empty = 说话
en.empty = say something
[@reflections]
pair = my => your
[@weekdays]
zh = 日|一|二|三|四|五|六
en = Sun|Mon|Tue|Wed|Thu|Fri|Sat
";

fn error(text: &str) -> RulesError {
    match parse(text) {
        Ok(_) => panic!("expected an error for {text:?}"),
        Err(error) => error,
    }
}

fn error_with_built_ins(text: &str) -> RulesError {
    error(&format!("{text}\n{BUILT_IN_SECTIONS}"))
}

fn values(now: &LocalTime) -> Values<'_> {
    Values {
        name: "Bob",
        user: "bob1",
        now,
        weekday: "Thu",
        text: "you",
        expr: "1 + 2",
        result: "3",
    }
}

#[test]
fn minimal_rules_parse() {
    let rules = parse(BUILT_IN_SECTIONS).expect("valid");
    assert_eq!(rules.rules.len(), 3);
    assert_eq!(rules.weekdays.name(Lang::En, 4), "Thu");
    assert_eq!(rules.weekdays.name(Lang::Zh, 0), "日");
}

#[test]
fn rules_keep_file_order_and_header_comments() {
    let text = format!("# hi\n[b]   # second\nmatch = b\nzh = 乙\nen = B\n[a]\nmatch = a\nzh = 甲\nen = A\n{BUILT_IN_SECTIONS}");
    let rules = parse(&text).expect("valid");
    let names: Vec<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["b", "a", "@arithmetic", "@recall-name", "@set-name"]
    );
}

#[test]
fn templates_fill_placeholders() {
    let now = NOW;
    let t = Template::parse("{name}/{user} {date} {time} {weekday} {year}年{month}月{day}日 {hour}:{minute}:{second} {text} {{x}}", |_| true)
        .expect("valid");
    assert_eq!(
        t.render(&values(&now)),
        "Bob/bob1 2026-11-26 09:05:07 Thu 2026年11月26日 9:05:07 you {x}"
    );
}

#[test]
fn template_errors() {
    assert!(Template::parse("{nmae}", |_| true)
        .unwrap_err()
        .contains("unknown placeholder `{nmae}`"));
    assert!(Template::parse("a {name", |_| true)
        .unwrap_err()
        .contains("unclosed"));
    assert!(Template::parse("a } b", |_| true)
        .unwrap_err()
        .contains("stray"));
    assert!(Template::parse("{}", |_| true)
        .unwrap_err()
        .contains("unknown placeholder"));
}

#[test]
fn unknown_key_reports_line() {
    let e = error_with_built_ins("[greeting]\nmach = hi\nzh = 你好\nen = hi");
    assert_eq!(e.line(), Some(2));
    assert!(e.message().contains("unknown key `mach`"), "{e}");
    assert!(e.message().contains("match, zh, en"), "{e}");
    assert_eq!(e.to_string(), format!("rules line 2: {}", e.message()));
}

#[test]
fn section_without_replies() {
    let e = error_with_built_ins("\n[greeting]\nmatch = hi\nzh = 你好");
    assert_eq!(e.line(), Some(2));
    assert!(e.message().contains("no `en` reply"), "{e}");
    let e = error_with_built_ins("[greeting]\nmatch = hi");
    assert!(e.message().contains("no `zh` reply"), "{e}");
}

#[test]
fn section_without_match() {
    let e = error_with_built_ins("[greeting]\nzh = 你好\nen = hi");
    assert_eq!(e.line(), Some(1));
    assert!(e.message().contains("no `match`"), "{e}");
}

#[test]
fn unknown_placeholder_reports_line() {
    let e = error_with_built_ins("[greeting]\nmatch = hi\nzh = 你好{nmae}\nen = hi");
    assert_eq!(e.line(), Some(3));
    assert!(e.message().contains("`{nmae}`"), "{e}");
}

#[test]
fn result_only_in_arithmetic() {
    let e = error_with_built_ins("[greeting]\nmatch = hi\nzh = {result}\nen = hi");
    assert_eq!(e.line(), Some(3));
    assert!(e.message().contains("cannot be used here"), "{e}");
}

#[test]
fn missing_built_in() {
    let (without_weekdays, _) = BUILT_IN_SECTIONS
        .split_once("[@weekdays]")
        .expect("present");
    let e = error(without_weekdays);
    assert_eq!(e.line(), None);
    assert!(e.message().contains("[@weekdays] is missing"), "{e}");
    assert_eq!(error("").line(), None);
}

#[test]
fn unknown_built_in_and_bad_headers() {
    let e = error_with_built_ins("[@greeting]");
    assert!(
        e.message().contains("unknown built-in section [@greeting]"),
        "{e}"
    );
    assert!(error_with_built_ins("[greeting")
        .message()
        .contains("closing `]`"));
    assert!(error_with_built_ins("[]")
        .message()
        .contains("bad section name"));
    assert!(error_with_built_ins("[two words]")
        .message()
        .contains("bad section name"));
    assert!(error_with_built_ins("[a] b")
        .message()
        .contains("unexpected text"));
}

#[test]
fn duplicate_section() {
    let e = error(&format!("{BUILT_IN_SECTIONS}\n[@weekdays]"));
    assert!(e.message().contains("defined twice"), "{e}");
}

#[test]
fn stray_lines() {
    let e = error("match = hi");
    assert_eq!(e.line(), Some(1));
    assert!(e.message().contains("before any [section]"), "{e}");
    let e = error("\n\nhello there");
    assert_eq!(e.line(), Some(3));
    assert!(e.message().contains("expected a `[section]` header"), "{e}");
    let e = error("[a]\n= x");
    assert!(e.message().contains("starts with `=`"), "{e}");
}

#[test]
fn empty_values() {
    let e = error_with_built_ins("[g]\nmatch = hi ||\nzh = a\nen = b");
    assert_eq!(e.line(), Some(2));
    assert!(e.message().contains("empty keyword"), "{e}");
    let e = error_with_built_ins("[g]\nmatch = hi\nzh =\nen = b");
    assert_eq!(e.line(), Some(3));
    assert!(e.message().contains("empty reply"), "{e}");
}

#[test]
fn match_forbidden_in_fallback() {
    let text = BUILT_IN_SECTIONS.replace("[@fallback]\n", "[@fallback]\nmatch = x\n");
    let e = error(&text);
    assert!(
        e.message().contains("unknown key `match` in [@fallback]"),
        "{e}"
    );
}

#[test]
fn reflection_errors() {
    let with = |pair: &str| BUILT_IN_SECTIONS.replace("pair = my => your", pair);
    assert!(error(&with("pair = my your")).message().contains("`=>`"));
    assert!(error(&with("pair = my =>"))
        .message()
        .contains("both sides"));
    assert!(error(&with("pair = hello! => hi"))
        .message()
        .contains("not made of English words"));
    assert!(error(&with("pair = ^我 => 你"))
        .message()
        .contains("only with English"));
    assert!(error(&with("swap = a => b"))
        .message()
        .contains("unknown key `swap`"));
    parse(&with("pair = ^you => I")).expect("anchored English pattern is fine");
}

#[test]
fn weekday_errors() {
    let e = error(&BUILT_IN_SECTIONS.replace("en = Sun|Mon|Tue|Wed|Thu|Fri|Sat", "en = Sun|Mon"));
    assert!(e.message().contains("seven"), "{e}");
    let e = error(&BUILT_IN_SECTIONS.replace("en = Sun|Mon|Tue|Wed|Thu|Fri|Sat", ""));
    assert!(e.message().contains("no `en` line"), "{e}");
}

#[test]
fn size_cap() {
    let big = format!("{BUILT_IN_SECTIONS}\n#{}", "x".repeat(MAX_RULES_BYTES));
    assert!(error(&big).message().contains("limit"));
}

#[test]
fn crlf_and_bom() {
    let text = format!("\u{feff}{}", BUILT_IN_SECTIONS.replace('\n', "\r\n"));
    parse(&text).expect("CRLF and a byte-order mark are fine");
}

#[test]
fn never_panics_on_junk() {
    for junk in [
        "",
        "[",
        "]",
        "=",
        "{",
        "[a]\nzh = {",
        "[a]\nmatch = |",
        "\u{0}",
        "[@weekdays]\nzh = |||||||",
        "😀 = 😀",
    ] {
        let _ = parse(junk);
        let _ = parse(&format!("{BUILT_IN_SECTIONS}\n{junk}"));
    }
}

//! Tests of the embedded robot with its default rules, at a fixed time.

use super::*;

/// Thursday 2026-11-26 09:05:07.
pub(super) const NOW: LocalTime = LocalTime {
    year: 2026,
    month: 11,
    day: 26,
    hour: 9,
    minute: 5,
    second: 7,
    weekday: 4,
};

fn robot() -> EmbeddedRobot {
    EmbeddedRobot::new()
}

fn ask(robot: &EmbeddedRobot, text: &str) -> String {
    robot.reply_at("tester", text, &NOW)
}

fn answer(text: &str) -> String {
    ask(&robot(), text)
}

#[track_caller]
fn assert_contains(reply: &str, expected: &str) {
    assert!(
        reply.contains(expected),
        "expected {expected:?} in {reply:?}"
    );
}

#[track_caller]
fn assert_is_english(reply: &str) {
    assert!(
        !contains_cjk(reply.replace("小图", "").as_str()),
        "expected English: {reply:?}"
    );
}

#[test]
fn default_rules_parse() {
    let rules = rules::parse(DEFAULT_RULES).expect("the default rules are valid");
    assert!(rules.rules.len() >= 10);
}

#[test]
fn robot_trait_basics() {
    let robot = robot();
    assert_eq!(robot.name(), "embedded");
    assert!(robot.never_blocks());
    let reply = robot.reply("alice", "1+2").expect("always answers");
    assert_contains(&reply, "3");
    assert!(format!("{robot:?}").starts_with("EmbeddedRobot"));
    let _ = EmbeddedRobot::default();
}

#[test]
fn greetings() {
    for text in ["你好", "您好！", "早上好", "小图，晚上好"] {
        let reply = answer(text);
        assert_contains(&reply, "你好");
        assert_contains(&reply, "tester");
    }
    for text in ["hello", "Hi!", "hey there", "Good morning", "HELLO XIAOTU"] {
        let reply = answer(text);
        assert!(
            reply.contains("Hello") || reply.contains("Hi"),
            "{text:?} → {reply:?}"
        );
        assert_contains(&reply, "tester");
        assert_is_english(&reply);
    }
}

#[test]
fn own_name() {
    for text in ["你是谁", "你叫什么名字？", "小图你是谁呀"] {
        assert_contains(&answer(text), "小图");
    }
    for text in [
        "what's your name",
        "What is your name?",
        "who are you",
        "Who are you?",
    ] {
        let reply = answer(text);
        assert_contains(&reply, "Xiaotu");
        assert_contains(&reply, "I'm");
    }
}

#[test]
fn time_of_day() {
    for text in ["几点了", "现在几点？", "现在时间"] {
        let reply = answer(text);
        assert!(
            reply.contains("09:05:07") || reply.contains("9点05分"),
            "{text:?} → {reply:?}"
        );
    }
    for text in ["what time is it", "What time is it?", "tell me the time"] {
        assert_contains(&answer(text), "09:05:07");
    }
}

#[test]
fn date_and_weekday() {
    for text in ["今天几号", "今天的日期", "今天星期几？"] {
        let reply = answer(text);
        assert_contains(&reply, "2026年11月26日");
        assert_contains(&reply, "星期四");
    }
    for text in [
        "what's the date",
        "What is the date today?",
        "what day is it",
    ] {
        let reply = answer(text);
        assert_contains(&reply, "2026-11-26");
        assert_contains(&reply, "Thursday");
    }
}

#[test]
fn arithmetic_in_both_languages() {
    assert_contains(&answer("1+2等于几"), "3");
    assert_contains(&answer("1+2等于几"), "1 + 2");
    assert_contains(&answer("3乘以4是多少"), "12");
    assert_contains(&answer("10除以4等于多少？"), "2.5");
    assert_contains(&answer("what is 3*4"), "12");
    assert_contains(&answer("What's 3 x 4?"), "12");
    assert_contains(&answer("(1+2)*3"), "9");
    assert_contains(&answer("10/4"), "2.5");
    assert_contains(&answer("2 - 5"), "-3");
    assert_contains(&answer("6 ÷ 4 ="), "1.5");
    assert_contains(&answer("1.5 + 2.25"), "3.75");
    assert_is_english(&answer("2 - 5"));
    assert!(contains_cjk(&answer("1+2等于几")) || answer("1+2等于几") == "1 + 2 = 3");
}

#[test]
fn arithmetic_problems_get_friendly_replies() {
    assert_contains(&answer("1/0"), "divide by zero");
    assert_contains(&answer("5除以0等于几"), "除数不能为零");
    assert_contains(
        &answer(&format!("{}1{}", "(".repeat(400), ")".repeat(400))),
        "too long",
    );
    assert_contains(&answer(&format!("{}1", "(".repeat(400))), "too long");
    assert_contains(&answer(&format!("{}+1", "9".repeat(400))), "too big");
    assert_contains(&answer("99999999999999999999999 * 10"), "1e24");
}

#[test]
fn numbers_alone_or_in_prose_are_not_arithmetic() {
    let reply = answer("I have 2 cats");
    assert_contains(&reply, "you have 2 cats");
    let reply = answer("42");
    assert_contains(&reply, "42");
    assert!(!reply.contains('='), "{reply:?}");
}

/// An arithmetic answer in one wording, whichever of the rules' alternatives was picked.
fn one_wording(reply: &str) -> String {
    reply
        .replace(" 等于 ", " = ")
        .trim_end_matches('。')
        .to_owned()
}

#[test]
fn arithmetic_with_chinese_numerals() {
    assert_eq!(one_wording(&answer("二加三等于几")), "2 + 3 = 5");
    assert_eq!(one_wording(&answer("十二乘以三")), "12 * 3 = 36");
    assert_eq!(one_wording(&answer("十二乘以3是多少？")), "12 * 3 = 36");
    assert_eq!(
        one_wording(&answer("两千三百减去三百")),
        "2300 - 300 = 2000"
    );
    assert_eq!(
        one_wording(&answer("三万五千除以五等于多少")),
        "35000 / 5 = 7000"
    );
    assert_eq!(
        one_wording(&answer("一亿二千万加一百零五")),
        "120000000 + 105 = 120000105"
    );
    assert_contains(&answer("五除以零等于几"), "除数不能为零");
}

#[test]
fn chinese_numerals_get_the_answer_of_their_digits() {
    for (chinese, digits) in [
        ("二加三等于几", "2加3等于几"),
        ("十二乘以三", "12乘以3"),
        ("请问一百零五除以五是多少", "请问105除以5是多少"),
        ("十万减一", "100000减1"),
    ] {
        assert_eq!(
            one_wording(&answer(chinese)),
            one_wording(&answer(digits)),
            "{chinese}"
        );
    }
}

#[test]
fn sentences_with_numeral_characters_get_their_usual_replies() {
    assert_contains(&answer("你好"), "tester");
    assert_contains(&answer("十分感谢"), "不");
    assert_contains(&answer("我们一起去吧"), "你们一起去吧");
    assert_contains(&answer("万一下雨怎么办"), "万一下雨怎么办");
    assert_contains(&answer("我有两个苹果"), "你有两个苹果");
    assert_contains(&answer("三心二意"), "三心二意");
    assert_contains(&answer("一百"), "一百");
    for text in ["十分感谢", "我们一起去吧", "万一下雨怎么办", "一百", "十一"]
    {
        let reply = answer(text);
        assert!(
            !reply.contains('=') && !reply.contains("等于") && !reply.contains("太大"),
            "{text:?} → {reply:?}"
        );
    }
}

#[test]
fn help() {
    for text in ["帮助", "你能做什么？"] {
        assert_contains(&answer(text), "我会");
    }
    for text in ["help", "What can you do?"] {
        assert_contains(&answer(text), "I can");
    }
}

#[test]
fn thanks_and_goodbye() {
    assert_contains(&answer("谢谢"), "不");
    assert!(answer("thanks!").contains("welcome") || answer("thanks!").contains("Any time"));
    assert!(answer("thank you").contains("welcome") || answer("thank you").contains("Any time"));
    assert_contains(&answer("再见"), "再见");
    assert_contains(&answer("拜拜"), "再见");
    assert_contains(&answer("bye"), "Goodbye");
    assert_contains(&answer("Goodbye!"), "Goodbye");
}

#[test]
fn fallback_reflects_english() {
    let reply = answer("I like my cat");
    assert_contains(&reply, "you like your cat");
    let reply = answer("I am tired of you.");
    assert_contains(&reply, "you are tired of me");
    assert!(!reply.contains("me.."), "{reply:?}");
}

#[test]
fn fallback_reflects_chinese() {
    let reply = answer("我喜欢我的猫");
    assert_contains(&reply, "你喜欢你的猫");
    let reply = answer("我觉得你很聪明。");
    assert_contains(&reply, "你觉得我很聪明");
}

#[test]
fn empty_and_symbol_only_messages() {
    assert_contains(&answer(""), "help");
    assert_contains(&answer("   "), "help");
    assert_contains(&answer("😀"), "help");
    assert_contains(&answer("？？？"), "帮助");
}

#[test]
fn remembers_names_per_user() {
    let robot = robot();
    assert_contains(&robot.reply_at("u1", "我叫什么", &NOW), "还没告诉我");
    assert_contains(&robot.reply_at("u1", "我叫小明", &NOW), "小明");
    assert_contains(&robot.reply_at("u1", "我叫什么？", &NOW), "你叫小明");
    assert_contains(&robot.reply_at("u1", "你好", &NOW), "小明");

    assert_contains(
        &robot.reply_at("u2", "what is my name", &NOW),
        "haven't told me",
    );
    assert_contains(
        &robot.reply_at("u2", "Hi, my name is Bob.", &NOW),
        "Nice to meet you, Bob!",
    );
    assert_contains(
        &robot.reply_at("u2", "What's my name?", &NOW),
        "Your name is Bob",
    );
    assert_contains(&robot.reply_at("u2", "hello", &NOW), "Bob");
    assert_contains(&robot.reply_at("u2", "call me Robert", &NOW), "Robert");
    assert_contains(&robot.reply_at("u2", "who am i", &NOW), "Robert");

    // Other users are unaffected.
    assert_contains(&robot.reply_at("u3", "hello", &NOW), "u3");
}

#[test]
fn names_are_trimmed_and_capped() {
    let robot = robot();
    robot.reply_at("u", "my name is \"Alice\"!!! and more", &NOW);
    assert_eq!(
        robot
            .names
            .recall(&Conversation::User("u".to_owned()))
            .as_deref(),
        Some("Alice")
    );
    robot.reply_at("u", "我叫小红。今年十岁", &NOW);
    assert_eq!(
        robot
            .names
            .recall(&Conversation::User("u".to_owned()))
            .as_deref(),
        Some("小红")
    );
    robot.reply_at("u", &format!("my name is {}", "x".repeat(100)), &NOW);
    assert_eq!(
        robot
            .names
            .recall(&Conversation::User("u".to_owned()))
            .map(|n| n.chars().count()),
        Some(MAX_NAME_CHARS)
    );
}

#[test]
fn no_name_means_no_set_name() {
    let robot = robot();
    let reply = robot.reply_at("u", "my name is?", &NOW);
    assert_eq!(
        robot.names.recall(&Conversation::User("u".to_owned())),
        None
    );
    assert!(!reply.contains("Nice to meet you"), "{reply:?}");
}

#[test]
fn name_memory_is_bounded() {
    let robot = robot().with_name_capacity(2);
    robot.reply_at("a", "my name is Ann", &NOW);
    robot.reply_at("b", "my name is Ben", &NOW);
    robot.reply_at("c", "my name is Cat", &NOW);
    assert_contains(
        &robot.reply_at("a", "what is my name", &NOW),
        "haven't told me",
    );
    assert_contains(&robot.reply_at("b", "what is my name", &NOW), "Ben");
    assert_contains(&robot.reply_at("c", "what is my name", &NOW), "Cat");
}

#[test]
fn keywords_respect_word_boundaries() {
    // "this" and "which" contain "hi" but are not greetings.
    for text in ["this is which", "which is this"] {
        let reply = answer(text);
        assert!(
            !reply.contains("Hello") && !reply.contains("Hi "),
            "{text:?} → {reply:?}"
        );
    }
    // "shell" contains "hell", "mythical" contains "hi"; "bye" inside "abbey"?
    assert!(!answer("the abbey").contains("Goodbye"));
}

#[test]
fn matching_ignores_case() {
    assert_contains(&answer("WHAT TIME IS IT"), "09:05:07");
    assert_contains(&answer("Who Are You"), "Xiaotu");
}

#[test]
fn language_follows_the_text() {
    assert!(contains_cjk(&answer("hello 你好")));
    assert_is_english(&answer("hello"));
    assert!(contains_cjk(&answer("what time is it 现在")));
}

#[test]
fn replies_are_deterministic() {
    for text in [
        "I like my cat",
        "thanks",
        "hello",
        "我喜欢你",
        "1+2",
        "what time is it",
    ] {
        let first = robot().reply_at("x", text, &NOW);
        for _ in 0..3 {
            assert_eq!(robot().reply_at("x", text, &NOW), first);
        }
    }
}

#[test]
fn alternatives_vary_with_the_text() {
    let replies: std::collections::HashSet<String> = [
        "I like cats",
        "I like dogs",
        "I like tea",
        "I like rain",
        "I like jazz",
        "I like maths",
    ]
    .iter()
    .map(|t| answer(t).replace(&t[7..], ""))
    .collect();
    assert!(replies.len() > 1, "{replies:?}");
}

#[test]
fn hostile_input_does_not_panic() {
    let robot = robot();
    let long = "a".repeat(100_000);
    let inputs = [
        String::new(),
        "%".to_owned(),
        "%s %d {name} {{".to_owned(),
        "😀🎉👍".to_owned(),
        "\u{0}\u{1}\u{7f}".to_owned(),
        "\u{202e}abc\u{200b}".to_owned(),
        "İİİ my name is İ".to_owned(),
        "(".repeat(1000),
        ")".repeat(1000),
        "-".repeat(1000) + "1",
        "99999999999999999999999".to_owned(),
        "99999999999999999999999*99999999999999999999999".to_owned(),
        "1/0".to_owned(),
        "0/0".to_owned(),
        "我叫".to_owned(),
        "my name is".to_owned(),
        "call me 😀".to_owned(),
        long.clone(),
        format!("I {long}"),
        "我".repeat(10_000),
    ];
    for text in &inputs {
        let reply = robot.reply_at("u", text, &NOW);
        assert!(!reply.is_empty(), "{text:?}");
        assert!(
            reply.chars().count() < 2000,
            "reply too long for {:?}",
            &text[..text.len().min(20)]
        );
    }
    // Odd user names too.
    let _ = robot.reply_at("", "hello", &NOW);
    let _ = robot.reply_at("😀", "my name is Bob", &NOW);
}

#[test]
fn custom_rules() {
    let text = DEFAULT_RULES.replace(
        "\n[greeting]\n",
        "\n[pizza]\nmatch = pizza | 披萨\nzh = 我也爱披萨！\nen = Pizza for {name}!\n\n[greeting]\n",
    );
    let robot = EmbeddedRobot::from_rules(&text).expect("valid");
    assert_eq!(ask(&robot, "I want PIZZA"), "Pizza for tester!");
    assert_eq!(ask(&robot, "披萨好吃"), "我也爱披萨！");
}

#[test]
fn rules_file_errors_name_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("robochat-rules-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let good = dir.join("good.rules");
    std::fs::write(&good, DEFAULT_RULES).expect("write");
    let robot = EmbeddedRobot::from_file(&good).expect("valid file");
    assert_contains(&ask(&robot, "1+2"), "3");

    let bad = dir.join("bad.rules");
    std::fs::write(
        &bad,
        format!("# x\n\n[greeting2]\nmatch = hi\nzh = 你好{{nmae}}\nen = hi\n{DEFAULT_RULES}"),
    )
    .expect("write");
    let error = EmbeddedRobot::from_file(&bad).expect_err("invalid");
    assert_eq!(error.line(), Some(5));
    assert_eq!(error.path(), Some(bad.as_path()));
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("{}:5: ", bad.display())),
        "{shown}"
    );
    assert_contains(&shown, "{nmae}");

    let missing = dir.join("missing.rules");
    let error = EmbeddedRobot::from_file(&missing).expect_err("missing");
    assert_contains(&error.to_string(), "missing.rules");
    assert_contains(&error.to_string(), "cannot open");

    let latin1 = dir.join("latin1.rules");
    std::fs::write(&latin1, b"# ok\n# caf\xe9\n").expect("write");
    let error = EmbeddedRobot::from_file(&latin1).expect_err("not UTF-8");
    assert_eq!(error.line(), Some(2));
    assert_contains(&error.to_string(), "UTF-8");

    let huge = dir.join("huge.rules");
    std::fs::write(&huge, "#".repeat(rules::MAX_RULES_BYTES + 10)).expect("write");
    let error = EmbeddedRobot::from_file(&huge).expect_err("too big");
    assert_contains(&error.to_string(), "limit");

    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn extract_name_cases() {
    assert_eq!(extract_name(" Bob").as_deref(), Some("Bob"));
    assert_eq!(extract_name(": 小明，你好").as_deref(), Some("小明"));
    assert_eq!(extract_name("「小明」").as_deref(), Some("小明"));
    assert_eq!(extract_name("Mary Jane!").as_deref(), Some("Mary Jane"));
    assert_eq!(extract_name("?"), None);
    assert_eq!(extract_name(""), None);
}

#[test]
fn robot_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<EmbeddedRobot>();
    let robot = std::sync::Arc::new(robot());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let robot = std::sync::Arc::clone(&robot);
            std::thread::spawn(move || {
                let user = format!("user{i}");
                robot.reply_at(&user, &format!("my name is N{i}"), &NOW);
                robot.reply_at(&user, "what is my name", &NOW)
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let reply = handle.join().expect("no panic");
        assert_contains(&reply, &format!("N{i}"));
    }
}

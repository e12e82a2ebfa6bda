//! One answer extractor for every strategy: boxed answers, "the answer is …", the last number,
//! or a short phrase.

/// Extract the final answer from a reasoning text.
pub fn extract_answer(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(boxed) = last_boxed(text) {
        return Some(clean(&boxed));
    }
    let cues = [
        "final answer is",
        "final answer:",
        "the answer is",
        "answer is",
        "answer:",
        "answer =",
    ];
    // The cue that starts last wins. Matching is on the original text (ASCII case folded), so
    // every offset is a char boundary of `text`: lowercasing first changes byte lengths (`İ`).
    let mut best: Option<(usize, usize)> = None;
    for cue in cues {
        if let Some(pos) = rfind_ascii_case_insensitive(text, cue) {
            let end = pos + cue.len();
            if best.is_none_or(|(b, _)| pos > b) {
                best = Some((pos, end));
            }
        }
    }
    if let Some((_, end)) = best {
        let rest = &text[end..];
        let phrase = rest
            .trim_start_matches([' ', ':', '*', '$', '='])
            .split(['\n'])
            .next()
            .unwrap_or("");
        let phrase = first_sentence(phrase);
        if let Some(n) = last_number(phrase).filter(|_| phrase.split_whitespace().count() <= 6) {
            return Some(n);
        }
        let cleaned = clean(phrase);
        if !cleaned.is_empty() {
            return Some(cleaned);
        }
    }
    if let Some(n) = last_number(text) {
        return Some(n);
    }
    let words = text.split_whitespace().count();
    (words <= 6)
        .then(|| clean(first_sentence(text)))
        .filter(|s| !s.is_empty())
}

/// Canonical form for comparing and voting, so that votes group answers that mean the same:
/// a stated number in plain decimal ("1,000" and "1000", "3.0" and "3", "$42", "42 apples" and
/// "42." all give one key), other text lower-case, without surrounding punctuation and with its
/// whitespace collapsed.
pub fn normalize(answer: &str) -> String {
    let cleaned = clean(answer);
    if let Some(x) = stated_number(answer).or_else(|| stated_number(&cleaned)) {
        return format_number(x);
    }
    cleaned
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether two answers agree (numerically when both state numbers).
pub fn answers_match(a: &str, b: &str) -> bool {
    match (stated_number(a), stated_number(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
        _ => normalize(a) == normalize(b),
    }
}

/// Most words a unit may take after a number ("42 square metres") before the answer is read
/// as a phrase that merely starts with a number.
const MAX_UNIT_WORDS: usize = 3;

/// The number an answer states: the whole answer as a number ([`parse_number`]), or a number
/// (after a currency sign) followed only by a few words of unit ("42 apples", "3.5 km.",
/// "$1,000 dollars"), or a simple fraction ("3/4"). A phrase with more numbers in it
/// ("3 apples and 4 pears") states none.
pub fn stated_number(answer: &str) -> Option<f64> {
    let t = answer.trim().replace('\u{2212}', "-");
    if let Some(x) = parse_number(&t) {
        return Some(x);
    }
    let t = t.trim_start_matches(['$', '€', '£', '¥', ' ']);
    let end = t
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit() || matches!(c, ',' | '.') || (i == 0 && matches!(c, '-' | '+')))
        })
        .map_or(t.len(), |(i, _)| i);
    let (number, rest) = t.split_at(end);
    let mut x = parse_number(number)?;
    let mut rest = rest.trim_start();
    if let Some(after) = rest.strip_prefix('/') {
        let digits = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        let denominator: f64 = after[..digits].parse().ok().filter(|d| *d != 0.0)?;
        if number.contains(['.', ',']) {
            return None;
        }
        x /= denominator;
        rest = after[digits..].trim_start();
    }
    let unit = rest.trim_end_matches(['.', '!', '*', ' ']);
    let unit_only = unit.split_whitespace().count() <= MAX_UNIT_WORDS
        && unit.chars().all(|c| {
            c.is_alphabetic() || c.is_whitespace() || matches!(c, '%' | '°' | '\'' | '’' | '-')
        });
    unit_only.then_some(x).filter(|x| x.is_finite())
}

/// Parse a number written with optional sign, thousands separators, currency or percent sign.
pub fn parse_number(s: &str) -> Option<f64> {
    let t: String = s
        .trim()
        .trim_matches(['$', '%', ' ', '*'])
        .trim_end_matches('.')
        .chars()
        .filter(|c| *c != ',')
        .collect();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok().filter(|x| x.is_finite())
}

fn format_number(x: f64) -> String {
    // -0.0 and negatives that round to zero would print as "-0".
    let x = if x.abs() < 5e-7 { 0.0 } else { x };
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Byte offset of the last occurrence of the ASCII `needle` in `haystack`, ignoring ASCII case.
/// An ASCII byte never occurs inside a multi-byte character, so the match starts and ends on
/// char boundaries.
pub fn rfind_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || n.len() > h.len() || !needle.is_ascii() {
        return None;
    }
    (0..=h.len() - n.len())
        .rev()
        .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn last_boxed(text: &str) -> Option<String> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..start + i].to_owned());
                }
            }
            _ => {}
        }
    }
    None
}

fn first_sentence(s: &str) -> &str {
    // A period ends the sentence unless it sits between digits (a decimal point).
    let bytes = s.as_bytes();
    for (i, c) in s.char_indices() {
        if c == '.' || c == '!' || c == '?' {
            let digit_before = i > 0 && bytes[i - 1].is_ascii_digit();
            let digit_after = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !(c == '.' && digit_before && digit_after) {
                return &s[..i];
            }
        }
    }
    s
}

/// The last number in the text, normalised.
pub fn last_number(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = chars.len();
    while i > 0 {
        i -= 1;
        if chars[i].is_ascii_digit() {
            let end = i + 1;
            let mut start = i;
            while start > 0 {
                let c = chars[start - 1];
                let joins_digits =
                    (c == ',' || c == '.') && start >= 2 && chars[start - 2].is_ascii_digit();
                if c.is_ascii_digit() || joins_digits {
                    start -= 1;
                } else {
                    break;
                }
            }
            if start > 0 && chars[start - 1] == '-' {
                start -= 1;
            }
            let s: String = chars[start..end].iter().collect();
            return parse_number(&s).map(format_number);
        }
    }
    None
}

fn clean(s: &str) -> String {
    s.trim()
        .trim_matches(|c: char| {
            c.is_whitespace() || matches!(c, '.' | ',' | '*' | '"' | '\'' | '$' | ':' | '`')
        })
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_wins() {
        assert_eq!(
            extract_answer("so x = 3, thus \\boxed{42}.").as_deref(),
            Some("42")
        );
        assert_eq!(
            extract_answer("\\boxed{\\frac{1}{2}}").as_deref(),
            Some("\\frac{1}{2}")
        );
    }

    #[test]
    fn answer_is_phrases() {
        assert_eq!(
            extract_answer("17 * 23 = 391. The answer is 391.").as_deref(),
            Some("391")
        );
        assert_eq!(extract_answer("Answer: 1,234").as_deref(), Some("1234"));
        assert_eq!(
            extract_answer("The answer is Paris.").as_deref(),
            Some("Paris")
        );
        assert_eq!(
            extract_answer("First 2 apples... so the final answer is 3.5 apples.").as_deref(),
            Some("3.5")
        );
    }

    #[test]
    fn last_number_and_short_phrases() {
        assert_eq!(
            extract_answer("We add 2 and 3 to get 5").as_deref(),
            Some("5")
        );
        assert_eq!(extract_answer("It is -7.").as_deref(), Some("-7"));
        assert_eq!(extract_answer("Paris").as_deref(), Some("Paris"));
        assert_eq!(extract_answer("   "), None);
        assert_eq!(
            extract_answer("a long rambling text with many words and no number at all here"),
            None
        );
    }

    #[test]
    fn letters_whose_lowercase_is_longer_do_not_shift_the_cue() {
        // 'İ' is 2 bytes, its lowercase 3: searching a lowercased copy put every later offset
        // one byte off, slicing inside a character (a panic) or past the end.
        let text = "İİİİ The answer is 42";
        assert_eq!(extract_answer(text).as_deref(), Some("42"));
        let text = "İstanbul? The Answer Is: Ankara";
        assert_eq!(extract_answer(text).as_deref(), Some("Ankara"));
        // Many of them before a cue near the end: the old offset ran past the end of the text.
        let text = format!("{}answer:", "İ ".repeat(50));
        assert_eq!(extract_answer(&text), None);
        let text = format!("{}answer: é7", "ẞİ".repeat(10));
        assert_eq!(extract_answer(&text).as_deref(), Some("7"));
    }

    #[test]
    fn ascii_case_insensitive_search() {
        assert_eq!(
            rfind_ascii_case_insensitive("xAnSwEr:y", "answer:"),
            Some(1)
        );
        assert_eq!(
            rfind_ascii_case_insensitive("answer: answer:", "answer:"),
            Some(8)
        );
        assert_eq!(rfind_ascii_case_insensitive("İanswer", "answer"), Some(2));
        assert_eq!(rfind_ascii_case_insensitive("ans", "answer"), None);
        assert_eq!(rfind_ascii_case_insensitive("", ""), None);
    }

    #[test]
    fn matching_is_numeric() {
        assert!(answers_match("391", "391.0"));
        assert!(answers_match("1,000", "1000"));
        assert!(!answers_match("391", "381"));
        assert!(answers_match("Paris", "paris."));
        assert_eq!(normalize("  42.50 "), "42.5");
    }

    #[test]
    fn what_means_the_same_votes_together() {
        for same in [
            &[
                "1000",
                "1,000",
                "1000.0",
                "$1,000",
                "1,000 dollars",
                "1000.",
            ][..],
            &[
                "42",
                "42.",
                "42 apples",
                "$42",
                "42 apples.",
                "**42**",
                "+42",
                "42%",
            ],
            &["3", "3.0", "3.00", " 3 ", "3 km"],
            &["-7", "−7", "-7 degrees"],
            &["0.75", "3/4", "3/4 cup", ".75", "'0.75'", "`0.750`"],
            &["0", "-0", "-0.0000001"],
        ] {
            let keys: Vec<String> = same.iter().map(|a| normalize(a)).collect();
            assert!(keys.iter().all(|k| *k == keys[0]), "{same:?} gave {keys:?}");
            for a in same {
                assert!(answers_match(a, same[0]), "{a:?} vs {:?}", same[0]);
            }
        }
        assert_eq!(normalize("  Paris\t  France. "), "paris france");
        assert_eq!(normalize("PARIS"), normalize("paris"));
        // Different numbers, and phrases that are not one number with a unit, stay apart.
        for (a, b) in [
            ("42", "43"),
            ("1,000", "100"),
            ("3 apples and 4 pears", "3"),
            ("1/0", "1"),
            ("1.5/2", "0.75"),
            ("42 is the number of the beast here", "42"),
        ] {
            assert_ne!(normalize(a), normalize(b), "{a:?} vs {b:?}");
        }
        assert_eq!(stated_number("1/0"), None);
        assert_eq!(stated_number("abc"), None);
        assert_eq!(stated_number("1e400"), None, "not finite");
    }

    #[test]
    fn hostile_unicode_never_panics_and_normalising_twice_changes_nothing() {
        let hostile = [
            "İ",
            "İİİ 42",
            "42 İ",
            "42 İstanbul",
            "ẞ",
            "ǅ",
            "ﬃ",
            "\u{0130}\u{0307}",
            "4\u{0301}2",
            "\u{200B}42\u{200B}",
            "\u{202E}24",
            "４２",
            "٤٢",
            "42\u{FE0F}",
            "🙂 42 🙂",
            "$",
            "-",
            "/",
            "1/",
            "/2",
            "-.",
            ",,,",
            "1,,2",
            "$€£¥",
            "\u{0}",
            "\u{FFFD}\u{FFFD}",
            "",
            "   ",
        ];
        for a in hostile {
            let once = normalize(a);
            assert_eq!(normalize(&once), once, "{a:?}");
            let _ = stated_number(a);
            let _ = answers_match(a, "42");
            let _ = extract_answer(a);
        }
        assert_eq!(normalize("42 İstanbul"), "42", "a unit word in any script");
        assert_eq!(normalize("İSTANBUL"), "İstanbul".to_lowercase());
        assert_eq!(
            normalize("\u{200B}42\u{200B}"),
            normalize("\u{200B}42\u{200B}")
        );
    }
}

//! Tests of the JSON form: walls read, each rule's message, limits met while parsing,
//! and numbers quoted as the client wrote them.

use super::*;

fn parse(input: &str) -> Result<WallConfig, ConfigError> {
    parse_json(input.as_bytes(), &Limits::default())
}

fn reason(input: &str) -> String {
    parse(input).unwrap_err().to_string()
}

#[test]
fn example_wall_parses_with_and_without_teams() {
    let config =
        parse(r#"{"profiles": [[21,25,28],[17],[17,22,17,19,17]], "num_teams": 3}"#).unwrap();
    assert_eq!(config.profiles().len(), 3);
    assert_eq!(config.section_count(), 9);
    assert_eq!(config.num_teams().map(NonZeroU64::get), Some(3));
    let config = parse(r#"{"profiles": [[0]]}"#).unwrap();
    assert_eq!(config.num_teams(), None);
    let config = parse(r#" {"num_teams": null, "profiles": [[30]]} "#).unwrap();
    assert_eq!(config.num_teams(), None);
    let config = parse("\u{feff}{\"profiles\": [[30]]}").unwrap();
    assert_eq!(config.section_count(), 1);
}

#[test]
fn wrong_types_name_profile_and_section() {
    let cases = [
        (r#"{"profiles": [[1, true]]}"#, "profile 1, section 2"),
        (r#"{"profiles": [[1], [null]]}"#, "profile 2, section 1"),
        (r#"{"profiles": [[5.0]]}"#, "`5.0` is not an integer height"),
        (r#"{"profiles": [["5"]]}"#, "profile 1, section 1"),
        (
            r#"{"profiles": [[31]]}"#,
            "profile 1, section 1: height `31` is outside 0..=30",
        ),
        (r#"{"profiles": [[-1]]}"#, "height `-1` is outside 0..=30"),
        (
            r#"{"profiles": [[18446744073709551616]]}"#,
            "not an integer height",
        ),
        (r#"{"profiles": [[1e309]]}"#, "number out of range"),
        (
            r#"{"profiles": [[1]], "num_teams": 0}"#,
            "num_teams must be an integer from 1 to 9223372036854775807, got `0`",
        ),
        (r#"{"profiles": [[1]], "num_teams": -2}"#, "got `-2`"),
        (r#"{"profiles": [[1]], "num_teams": true}"#, "num_teams"),
        (r#"{"profiles": [[1]], "num_teams": "3"}"#, "num_teams"),
    ];
    for (input, expected) in cases {
        let message = reason(input);
        assert!(message.contains(expected), "{input}: {message}");
    }
}

#[test]
fn structural_errors_are_refused() {
    let cases = [
        ("", "EOF"),
        (r#"{"profiles": [[1]]"#, "EOF"),
        (r#"{"profiles": [[1]]} x"#, "trailing characters"),
        (r#"{"profiles": []}"#, "the wall has no profiles"),
        (r#"{"profiles": [[1], []]}"#, "profile 2 has no sections"),
        (r#"{}"#, "missing field `profiles`"),
        (
            r#"{"profiles": [[1]], "num_team": 3}"#,
            "unknown field `num_team`",
        ),
        (
            r#"{"profiles": [[1]], "profiles": [[1]]}"#,
            "duplicate field `profiles`",
        ),
        (r#"[[1]]"#, "invalid type"),
        (r#"{"profiles": [1]}"#, "profile 1 as a list of heights"),
    ];
    for (input, expected) in cases {
        let message = reason(input);
        assert!(message.contains(expected), "{input}: {message}");
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let input = format!(
        r#"{{"profiles": {}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let message = reason(&input);
    assert!(
        message.contains(
            "invalid type: sequence, expected an integer height in 0..=30 at profile 1, section 1"
        ),
        "{message}"
    );
    let input = format!(
        r#"{{"profiles": [[1]], "num_teams": {}"#,
        "[".repeat(10_000)
    );
    assert!(reason(&input).contains("num_teams"));
}

#[test]
fn limits_are_enforced_while_parsing() {
    let long = format!(r#"{{"profiles": [[{}]]}}"#, vec!["1"; 2001].join(","));
    assert!(reason(&long).contains(
        "profile 1, section 2001: `1` is one section more than a profile may have (at most 2000)"
    ));
    let limits = Limits {
        max_sections_per_profile: 10,
        max_sections: 3,
    };
    let error = parse_json(br#"{"profiles": [[1,2],[3,4]]}"#, &limits).unwrap_err();
    assert!(error.to_string().contains(
        "profile 2, section 2: `4` is one section more than the wall may have in all (at most 3)"
    ));
}

fn feet(config: &WallConfig) -> Vec<Vec<u8>> {
    config
        .profiles()
        .iter()
        .map(|profile| profile.iter().map(|height| height.feet()).collect())
        .collect()
}

#[test]
fn negative_zero_is_the_height_zero_as_in_the_text_form() {
    let config = parse(r#"{"profiles": [[-0, 5, -0], [-0]]}"#).unwrap();
    assert_eq!(feet(&config), vec![vec![0, 5, 0], vec![0]]);
}

#[test]
fn number_errors_quote_the_token_as_written() {
    let cases = [
        (
            "-0.0",
            "profile 1, section 2: `-0.0` is not an integer height in 0..=30",
        ),
        (
            "-0e0",
            "profile 1, section 2: `-0e0` is not an integer height in 0..=30",
        ),
        (
            "1e1",
            "profile 1, section 2: `1e1` is not an integer height in 0..=30",
        ),
        (
            "1E+1",
            "profile 1, section 2: `1E+1` is not an integer height in 0..=30",
        ),
        (
            "30.0",
            "profile 1, section 2: `30.0` is not an integer height in 0..=30",
        ),
        (
            "0.5e-3",
            "profile 1, section 2: `0.5e-3` is not an integer height in 0..=30",
        ),
        (
            "18446744073709551616",
            "profile 1, section 2: `18446744073709551616` is not an integer height in 0..=30",
        ),
        (
            "-9223372036854775809",
            "profile 1, section 2: `-9223372036854775809` is not an integer height in 0..=30",
        ),
        ("-1", "profile 1, section 2: height `-1` is outside 0..=30"),
        ("31", "profile 1, section 2: height `31` is outside 0..=30"),
        (
            "18446744073709551615",
            "profile 1, section 2: height `18446744073709551615` is outside 0..=30",
        ),
    ];
    for (token, expected) in cases {
        let input = format!(r#"{{"profiles": [[-0, {token}, 1]], "num_teams": 2}}"#);
        let message = reason(&input);
        assert!(message.contains(expected), "{token}: {message}");
        assert!(!message.contains("e19"), "{token}: {message}");
    }
    let long = format!("1.{}", "0".repeat(10_000));
    let message = reason(&format!(r#"{{"profiles": [[{long}]]}}"#));
    assert!(message.contains("`1.000000000"), "{message}");
    assert!(message.len() < 200, "{message}");
}

#[test]
fn the_first_bad_number_is_named_even_after_a_negative_zero_was_taken() {
    // The fast pass takes `-0.0` for `-0` until it sees the text.
    let message = reason(r#"{"profiles": [[1, -0.0], [31]]}"#);
    assert!(
        message.contains("profile 1, section 2: `-0.0` is not an integer height"),
        "{message}"
    );
    let message = reason(r#"{"profiles": [[-0.0], [1, true]]}"#);
    assert!(message.contains("`-0.0`"), "{message}");
    // A negative zero written `-0`, then another error: that error stands.
    let message = reason(r#"{"profiles": [[-0], [1, true]]}"#);
    assert!(message.contains("profile 2, section 2"), "{message}");
    let message = reason(r#"{"profiles": [[-0], [1.5]]}"#);
    assert!(message.contains("profile 2, section 1: `1.5`"), "{message}");
    // A limit met before a bad number is the error.
    let limits = Limits {
        max_sections_per_profile: 2,
        max_sections: 100,
    };
    let error = parse_json(br#"{"profiles": [[-0, 1, 2, 2.5]]}"#, &limits).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("section 3: `2` is one section more than a profile may have (at most 2)"),
        "{error}"
    );
}

#[test]
fn num_teams_errors_quote_the_token_as_written() {
    for token in ["3.0", "1e1", "-0", "18446744073709551616", "-0.0"] {
        let message = reason(&format!(r#"{{"num_teams": {token}, "profiles": [[1]]}}"#));
        assert_eq!(
            message,
            format!("num_teams must be an integer from 1 to 9223372036854775807, got `{token}`"),
        );
        let message = reason(&format!(r#"{{"profiles": [[-0]], "num_teams": {token}}}"#));
        assert!(message.contains(&format!("got `{token}`")), "{message}");
    }
    assert!(reason(r#"{"profiles": [[1]], "num_teams": 1e309}"#).contains("number out of range"));
}

#[test]
fn an_empty_profile_is_refused_where_it_ends_before_the_rest_is_read() {
    // What follows is not even JSON: the empty profile is the answer, with its place.
    let message = reason(r#"{"profiles": [[1], [], [2, 3"#);
    assert!(
        message.contains("profile 2 has no sections at line 1 column 21"),
        "{message}"
    );
}

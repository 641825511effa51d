//! Tests of the text form: line ends, the quick pass against the general one, each
//! rule's message with its line and column, and the limits.

use super::*;

fn feet(profiles: &[Vec<Height>]) -> Vec<Vec<u8>> {
    profiles
        .iter()
        .map(|profile| profile.iter().map(|height| height.feet()).collect())
        .collect()
}

#[test]
fn example_wall_parses() {
    let parsed = parse_text(b"21 25 28\n17\n17 22 17 19 17\n", &Limits::default()).unwrap();
    assert_eq!(
        feet(&parsed),
        vec![vec![21, 25, 28], vec![17], vec![17, 22, 17, 19, 17]]
    );
}

#[test]
fn bom_crlf_tabs_blank_lines_and_trailing_spaces_are_accepted() {
    let parsed = parse_text(
        "\u{feff}21\t25 28  \r\n\r\n   \n17\r\n".as_bytes(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(feet(&parsed), vec![vec![21, 25, 28], vec![17]]);
}

#[test]
fn a_bare_cr_ends_a_line_and_line_numbers_count_it() {
    let parsed = parse_text(b"21 25 28\r17\r17 22 17 19 17\r", &Limits::default()).unwrap();
    assert_eq!(
        feet(&parsed),
        vec![vec![21, 25, 28], vec![17], vec![17, 22, 17, 19, 17]]
    );
    // Mixed ends: CR, CRLF, LF, and a CR before a CRLF (a blank line).
    let parsed = parse_text(b"1\r2\r\n3\n4\r\r\n5", &Limits::default()).unwrap();
    assert_eq!(
        feet(&parsed),
        vec![vec![1], vec![2], vec![3], vec![4], vec![5]]
    );
    let error = parse_text(b"1\r2\r\n\r3 31\r", &Limits::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 4 (profile 3), column 2: height `31` is outside 0..=30"
    );
}

/// The quick pass over the whole of `text`: `None` if it is not plain, no profiles if
/// it has none.
fn parse_plain_text(text: &[u8], limits: &Limits) -> Option<Vec<Vec<Height>>> {
    let mut quick = PlainText::new(limits);
    quick.read(text).then(|| quick.finish().unwrap_or_default())
}

/// The heights of every profile, in order, as one list.
fn all_feet(profiles: &[Vec<Height>]) -> Vec<u8> {
    feet(profiles).concat()
}

#[test]
fn plain_lines_take_the_quick_pass() {
    let cases: [(&str, Option<Vec<u8>>); 8] = [
        ("21 25 28", Some(vec![21, 25, 28])),
        ("\t0  30\t7 ", Some(vec![0, 30, 7])),
        ("", Some(vec![])),
        ("31", None),
        ("007", None),
        ("-0", None),
        ("5,6", None),
        ("1 2 x", None),
    ];
    for (line, expected) in cases {
        let parsed = parse_plain_text(line.as_bytes(), &Limits::default());
        assert_eq!(parsed.as_deref().map(all_feet), expected, "line {line:?}");
    }
}

#[test]
fn an_empty_piece_is_not_the_start_of_the_text() {
    let mut quick = PlainText::new(&Limits::default());
    assert!(quick.read(b""));
    assert!(quick.read("\u{feff}1 2\n".as_bytes()));
    assert_eq!(quick.finish().as_deref().map(all_feet), Some(vec![1, 2]));
}

#[test]
fn the_quick_pass_ends_lines_at_lf_cr_and_crlf_and_skips_blank_ones() {
    let parsed = parse_plain_text(b"1 2\r\n\r\n3\r4\n\n 5 \n", &Limits::default()).unwrap();
    assert_eq!(feet(&parsed), vec![vec![1, 2], vec![3], vec![4], vec![5]]);
    for (input, limits) in [("1 2 3", (2, 10)), ("1 2\n3", (2, 2)), ("1 2\n3 4", (2, 3))] {
        let limits = Limits {
            max_sections_per_profile: limits.0,
            max_sections: limits.1,
        };
        assert_eq!(
            parse_plain_text(input.as_bytes(), &limits),
            None,
            "{input:?}"
        );
    }
}

proptest::proptest! {
    /// Read a piece at a time, each piece ending at a line end, the text gives what it
    /// gives read whole.
    #[test]
    fn the_quick_pass_reads_pieces_as_the_whole(
        text in "(\u{feff})?[0-9 \r\nx]{0,24}",
        cuts in proptest::collection::vec(0usize..30, 0..4),
    ) {
        let limits = Limits { max_sections_per_profile: 5, max_sections: 8 };
        let bytes = text.as_bytes();
        // Each cut moves to the next line end after it, as a reader of a file would.
        let mut ends: Vec<usize> = cuts
            .iter()
            .filter_map(|&cut| {
                let from = cut.min(bytes.len());
                bytes[from..]
                    .iter()
                    .position(|&byte| byte == b'\n' || byte == b'\r')
                    .map(|offset| from + offset + 1)
            })
            .collect();
        ends.push(bytes.len());
        ends.sort_unstable();
        let mut quick = PlainText::new(&limits);
        let mut start = 0;
        let mut is_plain = true;
        for end in ends {
            is_plain = is_plain && quick.read(&bytes[start..end]);
            start = end;
        }
        let in_pieces = is_plain.then(|| quick.finish().unwrap_or_default());
        proptest::prop_assert_eq!(in_pieces, parse_plain_text(bytes, &limits));
    }

    /// The quick pass accepts only what the general one reads the same way.
    #[test]
    fn the_quick_pass_agrees_with_the_general_one(text in "[0-9 \t\r\n+x.-]{0,16}") {
        let limits = Limits { max_sections_per_profile: 4, max_sections: 6 };
        if let Some(quick) = parse_plain_text(text.as_bytes(), &limits) {
            let general = parse_any_text(text.as_bytes(), &limits);
            if quick.is_empty() {
                proptest::prop_assert_eq!(general, Err(ConfigError::EmptyWall));
            } else {
                proptest::prop_assert_eq!(general, Ok(quick));
            }
        }
    }
}

#[test]
fn limits_are_enforced_on_plain_lines_at_the_exact_token() {
    let limits = Limits {
        max_sections_per_profile: 3,
        max_sections: 5,
    };
    assert_eq!(
        parse_text(b"1 2 3 4\n", &limits).unwrap_err().to_string(),
        "line 1 (profile 1), column 4: `4` is one section more than a profile may have \
         (at most 3)"
    );
    assert_eq!(
        parse_text(b"1 2 3\n\n4 5 6\n", &limits)
            .unwrap_err()
            .to_string(),
        "line 3 (profile 2), column 3: `6` is one section more than the wall may have in \
         all (at most 5)"
    );
}

#[test]
fn bad_heights_name_line_column_token_and_rule() {
    let limits = Limits::default();
    let cases = [
        (
            "1 2\n\n3 31\n",
            "line 3 (profile 2), column 2: height `31` is outside 0..=30",
        ),
        (
            "-1\n",
            "line 1 (profile 1), column 1: height `-1` is outside 0..=30",
        ),
        (
            "5 abc\n",
            "line 1 (profile 1), column 2: `abc` is not an integer height in 0..=30",
        ),
        (
            "5.0\n",
            "line 1 (profile 1), column 1: `5.0` is not an integer height in 0..=30",
        ),
        (
            "+5\n",
            "line 1 (profile 1), column 1: `+5` is not an integer height in 0..=30",
        ),
        (
            "99999999999999999999999\n",
            "line 1 (profile 1), column 1: height `99999999999999999999999` is outside 0..=30",
        ),
    ];
    for (input, message) in cases {
        let error = parse_text(input.as_bytes(), &limits).unwrap_err();
        assert_eq!(error.to_string(), message, "input {input:?}");
    }
}

#[test]
fn negative_zero_and_leading_zeros_are_integers() {
    let parsed = parse_text(b"-0 007 30\n", &Limits::default()).unwrap();
    assert_eq!(feet(&parsed), vec![vec![0, 7, 30]]);
}

#[test]
fn empty_and_blank_configs_are_an_empty_wall() {
    for input in ["", "\n\n", "  \r\n\t\n"] {
        assert_eq!(
            parse_text(input.as_bytes(), &Limits::default()),
            Err(ConfigError::EmptyWall)
        );
    }
}

#[test]
fn profile_of_2001_sections_is_refused() {
    let line = vec!["1"; 2001].join(" ");
    let error = parse_text(line.as_bytes(), &Limits::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 1 (profile 1), column 2001: `1` is one section more than a profile may have \
         (at most 2000)"
    );
    let line = vec!["1"; 2000].join(" ");
    assert!(parse_text(line.as_bytes(), &Limits::default()).is_ok());
}

#[test]
fn total_section_limit_is_enforced() {
    let limits = Limits {
        max_sections_per_profile: 2000,
        max_sections: 5,
    };
    assert!(parse_text(b"1 2 3\n4 5\n", &limits).is_ok());
    assert_eq!(
        parse_text(b"1 2 3\n4 5 6\n", &limits),
        Err(ConfigError::WallTooLarge {
            at: Location {
                line: Some(2),
                profile: 2,
                section: 3
            },
            token: "6".to_owned(),
            limit: 5
        })
    );
}

#[test]
fn invalid_utf8_is_reported_with_its_offset() {
    assert_eq!(
        parse_text(b"1 2\xff\n", &Limits::default()),
        Err(ConfigError::NotUtf8 { offset: 3 })
    );
}

#[test]
fn long_tokens_are_truncated_in_messages() {
    let token = "x".repeat(10_000);
    let error = parse_text(token.as_bytes(), &Limits::default()).unwrap_err();
    assert!(error.to_string().len() < 200);
}

#[test]
fn an_invalid_byte_is_reported_before_an_earlier_bad_token() {
    assert_eq!(
        parse_text(b"1 x\n2 \xff\n", &Limits::default()),
        Err(ConfigError::NotUtf8 { offset: 6 })
    );
    // The offset counts the byte order mark, as it is in the file.
    assert_eq!(
        parse_text(b"\xef\xbb\xbf1 2\xff", &Limits::default()),
        Err(ConfigError::NotUtf8 { offset: 6 })
    );
}

//! The `icewall simulate` command, run as a real process on real files.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn icewall(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_icewall"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the icewall binary runs");
    // A command that fails before reading stdin closes it: a broken pipe is expected.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

const EXAMPLE: &[u8] = b"21 25 28\n17\n17 22 17 19 17\n";

#[test]
fn summary_shows_days_and_cost_with_separators() {
    let output = icewall(&["simulate", "-"], EXAMPLE);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.contains("days:     13"), "{text}");
    assert!(text.contains("32,233,500 Gold Dragons"), "{text}");
    assert!(
        text.contains("       3         5           13          11,310"),
        "{text}"
    );
}

#[test]
fn one_team_is_said_in_the_singular() {
    let output = icewall(&["simulate", "-", "--num-teams", "1"], EXAMPLE);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(
        text.starts_with("builders: 1 team\ndays:     87\n"),
        "{text}"
    );
    let output = icewall(&["simulate", "-", "--num-teams", "2"], EXAMPLE);
    assert!(stdout(&output).starts_with("builders: 2 teams\n"));
}

#[test]
fn json_is_the_api_summary() {
    let output = icewall(&["simulate", "-", "--json", "--num-teams", "3"], EXAMPLE);
    assert!(output.status.success());
    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"days": 31, "num_teams": 3, "ice": 16965, "cost": 32233500,
            "profiles": [
                {"profile": 1, "sections": 3, "days": 9, "ice": 3120, "cost": 5928000},
                {"profile": 2, "sections": 1, "days": 15, "ice": 2535, "cost": 4816500},
                {"profile": 3, "sections": 5, "days": 31, "ice": 11310, "cost": 21489000}]})
    );
}

#[test]
fn json_config_from_a_file_with_its_own_teams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wall.json");
    std::fs::write(
        &path,
        br#"{"profiles": [[21,25,28],[17],[17,22,17,19,17]], "num_teams": 2}"#,
    )
    .unwrap();
    let output = icewall(&["simulate", path.to_str().unwrap(), "--json"], b"");
    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(summary["days"], 48);
}

#[test]
fn log_prints_only_the_team_log() {
    let output = icewall(&["simulate", "-", "--log", "--num-teams", "3"], EXAMPLE);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[0], "day 2: team 3 finished section 3 of profile 1");
    assert_eq!(lines[11], "day 31: team 2 relieved");
}

#[test]
fn days_prints_one_row_per_day() {
    let output = icewall(&["simulate", "-", "--days"], EXAMPLE);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "day\tice_p1\tice_p2\tice_p3\tice_total\tcost_to_date"
    );
    assert_eq!(lines[1], "1\t585\t195\t975\t1755\t3334500");
    assert_eq!(lines.len(), 14);
    assert!(lines[13].ends_with("\t32233500"));
}

#[test]
fn bad_config_exits_non_zero_with_the_location() {
    let output = icewall(&["simulate", "-"], b"1 2\n3 31\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let message = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        message.trim(),
        "icewall: -: line 2 (profile 2), column 2: height `31` is outside 0..=30"
    );
}

#[test]
fn missing_file_and_bad_flag_are_errors_not_panics() {
    let output = icewall(&["simulate", "/nonexistent/wall.txt"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
    let output = icewall(&["simulate", "-", "--num-teams", "0"], EXAMPLE);
    assert_eq!(output.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
}

#[test]
fn bare_cr_line_ends_are_lines_not_spaces() {
    let crlf = icewall(&["simulate", "-", "--json"], EXAMPLE);
    let cr = icewall(
        &["simulate", "-", "--json"],
        b"21 25 28\r17\r17 22 17 19 17\r",
    );
    assert!(
        cr.status.success(),
        "{}",
        String::from_utf8_lossy(&cr.stderr)
    );
    assert_eq!(stdout(&cr), stdout(&crlf));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&cr)).unwrap();
    assert_eq!(summary["profiles"].as_array().unwrap().len(), 3);
}

#[test]
fn input_past_max_body_stops_with_a_clear_error() {
    let output = icewall(&["simulate", "/dev/zero", "--max-body", "1000"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "icewall: /dev/zero: the input is larger than the limit of 1000 bytes (--max-body)"
    );
    let output = icewall(&["simulate", "-", "--max-body", "10"], EXAMPLE);
    assert_eq!(output.status.code(), Some(1));
    let output = icewall(&["simulate", "-", "--max-body", "28"], EXAMPLE);
    assert!(output.status.success());
    // A regular file: its size says so before a byte is read, with the same words.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wall.txt");
    std::fs::write(&file, EXAMPLE).unwrap();
    let path = file.to_str().unwrap();
    let output = icewall(&["simulate", path, "--max-body", "10"], b"");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        format!("icewall: {path}: the input is larger than the limit of 10 bytes (--max-body)")
    );
    let output = icewall(&["simulate", path, "--max-body", "28"], b"");
    assert!(output.status.success());
}

#[test]
fn a_large_file_gives_what_its_text_gives_on_stdin_plain_or_not() {
    // Larger than the buffer a plain file is read through, so that it takes many reads.
    let mut plain = String::new();
    for line in 0..120u32 {
        let heights: Vec<String> = (0..1000u32)
            .map(|i| ((line * 31 + i * 7) % 31).to_string())
            .collect();
        plain.push_str(&heights.join(" "));
        plain.push_str(if line % 2 == 0 { "\r\n" } else { "\n" });
    }
    assert!(plain.len() > 300_000);
    // The same wall with a height the quick pass leaves to the general one, late in
    // the file: it is then read again, whole.
    let last_seven = plain.rfind(" 7 ").unwrap();
    let mut not_plain = plain.clone();
    not_plain.replace_range(last_seven..last_seven + 3, " 007 ");
    let invalid = format!("{plain}x\n");
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("plain.txt", &plain),
        ("not-plain.txt", &not_plain),
        ("invalid.txt", &invalid),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let args = [
            "simulate",
            path.to_str().unwrap(),
            "--json",
            "--num-teams",
            "50",
        ];
        let from_file = icewall(&args, b"");
        let mut stdin_args = args;
        stdin_args[1] = "-";
        let from_stdin = icewall(&stdin_args, text.as_bytes());
        assert_eq!(from_file.status.code(), from_stdin.status.code(), "{name}");
        assert_eq!(stdout(&from_file), stdout(&from_stdin), "{name}");
        let path_message =
            String::from_utf8_lossy(&from_file.stderr).replace(path.to_str().unwrap(), "-");
        assert_eq!(
            path_message,
            String::from_utf8_lossy(&from_stdin.stderr),
            "{name}"
        );
    }
    let plain_summary = icewall(&["simulate", "-", "--json"], plain.as_bytes());
    let not_plain_summary = icewall(&["simulate", "-", "--json"], not_plain.as_bytes());
    assert!(plain_summary.status.success());
    assert_eq!(stdout(&plain_summary), stdout(&not_plain_summary));
    let invalid = icewall(&["simulate", "-"], invalid.as_bytes());
    assert_eq!(invalid.status.code(), Some(1));
}

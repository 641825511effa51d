//! The README's curl walk-through, run against the real server: the block between its
//! `walkthrough` markers is turned into a script that checks every `# =>` line, so the
//! README cannot drift from what the server answers.

use std::process::Command;

use crate::common::Server;

/// The shell block between `<!-- walkthrough:start -->` and `<!-- walkthrough:end -->`.
fn walkthrough_block(readme: &str) -> Vec<&str> {
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("the README marks its walk-through");
    let end = readme[start..]
        .find("<!-- walkthrough:end -->")
        .expect("the walk-through has an end marker")
        + start;
    readme[start..end]
        .lines()
        .skip_while(|line| !line.starts_with("```sh"))
        .skip(1)
        .take_while(|line| !line.starts_with("```"))
        .collect()
}

/// Bash that runs the block with `BASE` pointing at `base`, and fails naming the first
/// command whose output differs from its `# =>` lines.
fn checking_script(block: &[&str], base: &str) -> String {
    let mut script = String::from("set -euo pipefail\n");
    let mut command = String::new();
    let mut expected: Vec<&str> = Vec::new();
    let flush = |script: &mut String, command: &mut String, expected: &mut Vec<&str>| {
        if command.is_empty() {
            return;
        }
        if expected.is_empty() {
            script.push_str(command);
            script.push('\n');
        } else {
            let quoted = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
            script.push_str(&format!(
                "out=$({command}\n)\nwant={}\nif [ \"$out\" != \"$want\" ]; then\n  \
                 printf 'README command: %s\\nprinted: %s\\nREADME says: %s\\n' {} \"$out\" \"$want\" >&2\n  exit 1\nfi\n",
                quoted(&expected.join("\n")),
                quoted(command),
            ));
        }
        command.clear();
        expected.clear();
    };
    for line in block {
        if let Some(output) = line.strip_prefix("# => ") {
            expected.push(output);
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with("BASE=") {
            flush(&mut script, &mut command, &mut expected);
            script.push_str(&format!("BASE={base}\n"));
        } else {
            // A line that continues the previous one joins it.
            if !command.ends_with('\\') {
                flush(&mut script, &mut command, &mut expected);
            } else {
                command.push('\n');
            }
            command.push_str(line);
        }
    }
    flush(&mut script, &mut command, &mut expected);
    script
}

#[test]
fn the_readme_walkthrough_runs_and_prints_what_it_says() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let block = walkthrough_block(&readme);
    assert!(
        block
            .iter()
            .filter(|line| line.starts_with("# => "))
            .count()
            >= 10,
        "the walk-through checks its answers"
    );
    let server = Server::start(&[]);
    let script = checking_script(&block, &server.base);
    let ran = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .output()
        .expect("bash and curl are installed");
    assert!(
        ran.status.success(),
        "the README's walk-through failed:\n{}\n{}\nscript:\n{script}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    // It ends with a DELETE, and the server is still up: nothing shut it down early.
    assert_eq!(server.get("/api/num_jobs").status, 200);
    assert!(server.shutdown().success());
}

#[test]
fn a_wrong_answer_in_the_walkthrough_is_caught() {
    let block = ["BASE=http://127.0.0.1:1", "echo 1", "# => 2"];
    let script = checking_script(&block, "http://127.0.0.1:1");
    let ran = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(!ran.status.success());
    assert!(String::from_utf8_lossy(&ran.stderr).contains("README says: 2"));
}

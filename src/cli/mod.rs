//! Command-line subcommands other than the server: `simulate` runs a wall in-process,
//! the client subcommands talk to a running server.

pub mod client;
pub mod simulate;

/// `message` with its control characters escaped (`\u{1b}`), so that bytes taken from
/// a config file or a server's answer cannot move the cursor or recolour a terminal.
pub fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            printable("height `2\u{1b}[31m` é\tx\n"),
            "height `2\\u{1b}[31m` é\\tx\\n"
        );
    }
}

//! Command-line subcommands other than the server: `simulate` runs a wall in-process,
//! the client subcommands talk to a running server.

pub mod client;
pub mod simulate;

use std::io::{self, Write};

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

/// Text on its way out (a team log from a server) with its control characters escaped
/// as `printable` escapes them, but for the `\n` and `\t` of its lines, so that a
/// hostile server's bytes cannot move the cursor or recolour a terminal either. It works
/// on bytes as they come: an answer need not be UTF-8, nor cut between characters.
pub struct PrintableText<W: Write> {
    out: W,
    /// The last byte was `0xC2`, held back: with the next one it may be a C1 control
    /// (`U+0080..=U+009F`, such as the CSI `U+009B`).
    lead: bool,
}

impl<W: Write> PrintableText<W> {
    pub fn new(out: W) -> PrintableText<W> {
        PrintableText { out, lead: false }
    }

    /// # Errors
    /// When `out` cannot be written.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut clean = Vec::with_capacity(bytes.len());
        for &byte in bytes {
            if std::mem::take(&mut self.lead) {
                if (0x80..=0x9f).contains(&byte) {
                    write!(clean, "{}", char::from(byte).escape_default())?;
                    continue;
                }
                clean.push(0xc2);
            }
            match byte {
                b'\n' | b'\t' => clean.push(byte),
                0x00..=0x1f | 0x7f => write!(clean, "{}", char::from(byte).escape_default())?,
                0xc2 => self.lead = true,
                _ => clean.push(byte),
            }
        }
        self.out.write_all(&clean)
    }

    /// Writes the byte held back, if the text ended on it.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn finish(mut self) -> io::Result<()> {
        if self.lead {
            self.out.write_all(&[0xc2])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{PrintableText, printable};

    #[test]
    fn text_keeps_its_lines_and_escapes_the_rest_as_printable_does_across_any_cut() {
        let text = "a\x1b[31mb\tc\r\n\u{9b}2J é\u{7f}\u{a9}\n".as_bytes();
        let expected = format!(
            "{}\t{}\n{}\n",
            printable("a\x1b[31mb"),
            printable("c\r"),
            printable("\u{9b}2J é\u{7f}\u{a9}")
        );
        for cut in 0..=text.len() {
            let mut out = Vec::new();
            let mut printable_text = PrintableText::new(&mut out);
            printable_text.write(&text[..cut]).unwrap();
            printable_text.write(&text[cut..]).unwrap();
            printable_text.finish().unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), expected, "cut at {cut}");
        }
        // Not UTF-8: passed on as it is, a lone lead byte at the end included.
        let mut out = Vec::new();
        let mut printable_text = PrintableText::new(&mut out);
        printable_text.write(b"\xff\xc2").unwrap();
        printable_text.finish().unwrap();
        assert_eq!(out, b"\xff\xc2");
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            printable("height `2\u{1b}[31m` é\tx\n"),
            "height `2\\u{1b}[31m` é\\tx\\n"
        );
    }
}

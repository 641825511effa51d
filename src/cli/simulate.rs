//! `icewall simulate`: runs one simulation in-process and prints the summary, the team
//! log, a per-day table or the API's summary JSON.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::num::NonZeroU64;
use std::path::PathBuf;

use thousands::Separable;

use crate::wall::{self, ConfigError, Height, Limits, PlainText, Summary, WallConfig, WorkTables};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Wall config: the text form (one profile per line) or JSON; `-` reads stdin.
    pub file: PathBuf,
    /// Number of teams; overrides `num_teams` of a JSON config. Unlimited crews if absent.
    #[arg(long, value_parser = wall::parse_num_teams)]
    pub num_teams: Option<NonZeroU64>,
    /// Print the summary as the API's JSON object.
    #[arg(long, group = "output")]
    pub json: bool,
    /// Print the team log, one line per event.
    #[arg(long, group = "output")]
    pub log: bool,
    /// Print a table of every day: ice per profile, total ice, cumulative cost.
    #[arg(long, group = "output")]
    pub days: bool,
    /// Most sections in one profile.
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_SECTIONS_PER_PROFILE)]
    pub max_profile_sections: usize,
    /// Most sections in the whole wall.
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_SECTIONS)]
    pub max_sections: usize,
    /// Largest input, as the server's --max-body (bytes, or with a unit: `16MiB`);
    /// reading stops past it.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = crate::settings::parse_size)]
    pub max_body: u64,
}

/// Why `simulate` could not print a result.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: the input is larger than the limit of {limit} bytes (--max-body)")]
    TooLarge { path: String, limit: u64 },
    #[error("{path}: {source}")]
    Config { path: String, source: ConfigError },
    #[error("cannot write output: {0}")]
    Write(#[from] io::Error),
}

impl SimulateError {
    /// As the client's: 1 for a config that is refused (too large or invalid), 2 for a
    /// file that cannot be read or an output that cannot be written.
    pub fn exit_code(&self) -> u8 {
        match self {
            SimulateError::TooLarge { .. } | SimulateError::Config { .. } => 1,
            SimulateError::Read { .. } | SimulateError::Write(_) => 2,
        }
    }
}

/// Runs the command, writing to `out`.
///
/// # Errors
/// An unreadable file, a bad config, or a failed write (a closed pipe is not an error).
pub fn run(args: &SimulateArgs, out: &mut impl Write) -> Result<(), SimulateError> {
    let path = args.file.display().to_string();
    let limits = Limits {
        max_sections_per_profile: args.max_profile_sections,
        max_sections: args.max_sections,
    };
    let config = match read_config(args, &limits).map_err(|source| SimulateError::Read {
        path: path.clone(),
        source,
    })? {
        Input::Plain(profiles) => WallConfig::try_new(profiles, None),
        Input::Whole(input) => wall::parse_config(&input, &limits),
        Input::TooLarge => {
            return Err(SimulateError::TooLarge {
                path,
                limit: args.max_body,
            });
        }
    }
    .map_err(|source| SimulateError::Config { path, source })?;
    let config = match args.num_teams {
        Some(teams) => config.with_num_teams(Some(teams)),
        None => config,
    };
    let written = if args.log {
        wall::simulate(&config).log.write_to(out)
    } else {
        let (summary, work) = wall::simulate_without_log(&config);
        if args.json {
            serde_json::to_writer(&mut *out, &summary)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(out))
        } else if args.days {
            write_day_table(&work, out)
        } else {
            write_summary(&summary, out)
        }
    };
    match written.and_then(|()| out.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The input, as far as it had to be read.
enum Input {
    /// A plain text wall, read a piece at a time.
    Plain(Vec<Vec<Height>>),
    /// Any other input, held whole for `parse_config`.
    Whole(Vec<u8>),
    /// More than `--max-body`.
    TooLarge,
}

/// Reads a file of plain text (nearly every wall) through a small buffer, which needs
/// no memory the size of the file (whose page faults cost a run as much as the reading
/// itself), and anything else whole: stdin, a pipe, JSON, and any text the quick pass
/// does not take, which a regular file can be read again for.
fn read_config(args: &SimulateArgs, limits: &Limits) -> io::Result<Input> {
    if args.file.as_os_str() == "-" {
        return read_whole(io::stdin().lock(), 0, args.max_body);
    }
    let mut file = fs::File::open(&args.file)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return read_whole(file, 0, args.max_body);
    }
    if metadata.len() > args.max_body {
        return Ok(Input::TooLarge);
    }
    match read_plain(&mut file, args.max_body, limits, PIECE_BYTES)? {
        Some(input) => Ok(input),
        None => {
            file.rewind()?;
            read_whole(file, metadata.len(), args.max_body)
        }
    }
}

/// The size of the buffer a plain text file is read through: a few dozen reads of a
/// large wall, and the buffer stays in the processor's cache.
const PIECE_BYTES: usize = 128 * 1024;

/// The quick pass of [`PlainText`] over `source`, read `piece_bytes` at a time, each
/// piece cut after its last line end; `None` when the text is not plain (or a line
/// does not fit in a piece), which must then be read whole.
fn read_plain(
    source: &mut impl Read,
    max_body: u64,
    limits: &Limits,
    piece_bytes: usize,
) -> io::Result<Option<Input>> {
    let mut quick = PlainText::new(limits);
    let mut buffer = vec![0; piece_bytes];
    let (mut filled, mut total) = (0, 0u64);
    loop {
        let count = match source.read(&mut buffer[filled..]) {
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        total += count as u64;
        if total > max_body {
            return Ok(Some(Input::TooLarge));
        }
        filled += count;
        let is_end = count == 0;
        let lines = if is_end {
            filled
        } else {
            buffer[..filled]
                .iter()
                .rposition(|&byte| byte == b'\n' || byte == b'\r')
                .map_or(0, |last| last + 1)
        };
        if lines == 0 && filled == buffer.len() {
            return Ok(None);
        }
        if !quick.read(&buffer[..lines]) {
            return Ok(None);
        }
        if is_end {
            return Ok(quick.finish().map(Input::Plain));
        }
        buffer.copy_within(lines..filled, 0);
        filled -= lines;
    }
}

/// At most one byte past `--max-body`, which is enough to tell that the input is too
/// large without reading the rest of an endless one (`/dev/zero`, a pipe). The buffer
/// is allocated once at the file's `size` when it is known: grown piece by piece, it
/// would be copied and touched again.
fn read_whole(source: impl Read, size: u64, max_body: u64) -> io::Result<Input> {
    let limit = max_body.saturating_add(1);
    // One byte more than the file, so that the read which finds its end needs no room.
    let capacity = size.saturating_add(1).min(limit);
    let mut input = Vec::with_capacity(usize::try_from(capacity).unwrap_or(usize::MAX));
    source.take(limit).read_to_end(&mut input)?;
    if input.len() as u64 > max_body {
        return Ok(Input::TooLarge);
    }
    Ok(Input::Whole(input))
}

/// The readable summary: totals with thousands separators, then a row per profile.
///
/// # Errors
/// Whatever `out` returns.
pub fn write_summary(summary: &Summary, out: &mut impl Write) -> io::Result<()> {
    let builders = match summary.num_teams {
        Some(1) => "1 team".to_owned(),
        Some(teams) => format!("{teams} teams"),
        None => "unlimited crews".to_owned(),
    };
    writeln!(out, "builders: {builders}")?;
    writeln!(out, "days:     {}", summary.days.separate_with_commas())?;
    writeln!(
        out,
        "ice:      {} cubic yards",
        summary.ice.separate_with_commas()
    )?;
    writeln!(
        out,
        "cost:     {} Gold Dragons",
        summary.cost.separate_with_commas()
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:>8} {:>9} {:>12} {:>15} {:>22}",
        "profile", "sections", "days", "ice", "cost"
    )?;
    for profile in &summary.profiles {
        writeln!(
            out,
            "{:>8} {:>9} {:>12} {:>15} {:>22}",
            profile.profile,
            profile.sections,
            profile.days.separate_with_commas(),
            profile.ice.separate_with_commas(),
            profile.cost.separate_with_commas()
        )?;
    }
    Ok(())
}

/// One row per day, tab-separated so it pastes into a spreadsheet.
fn write_day_table(work: &WorkTables, out: &mut impl Write) -> io::Result<()> {
    let profiles = work.profile_count();
    write!(out, "day")?;
    for profile in 1..=profiles {
        write!(out, "\tice_p{profile}")?;
    }
    writeln!(out, "\tice_total\tcost_to_date")?;
    for day in 1..=work.days() {
        write!(out, "{day}")?;
        for profile in 1..=profiles {
            write!(out, "\t{}", work.ice(profile, day).unwrap_or(0))?;
        }
        writeln!(out, "\t{}\t{}", work.wall_ice(day), work.cost_through(day))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_sections_per_profile: 50,
        max_sections: 400,
    };

    fn read_in_pieces(text: &[u8], piece_bytes: usize) -> Option<Input> {
        read_plain(&mut &text[..], 1 << 20, &LIMITS, piece_bytes).unwrap()
    }

    #[test]
    fn a_plain_file_read_in_pieces_is_the_file_read_whole() {
        // Lines of many lengths, so that pieces end within lines, CRLF split between
        // pieces, a byte order mark and a last line with no line end.
        let mut text = "\u{feff}".as_bytes().to_vec();
        for line in 0..40 {
            let heights: Vec<String> = (0..line % 13 + 1)
                .map(|i| ((line * 7 + i * 3) % 31).to_string())
                .collect();
            text.extend_from_slice(heights.join(" ").as_bytes());
            text.extend_from_slice(if line % 3 == 0 { b"\r\n" } else { b"\n" });
        }
        text.extend_from_slice(b"1 2 3");
        let whole = wall::parse_text(&text, &LIMITS).unwrap();
        for piece_bytes in [40, 41, 57, 64, 1000, 1 << 16] {
            match read_in_pieces(&text, piece_bytes) {
                Some(Input::Plain(profiles)) => assert_eq!(profiles, whole, "{piece_bytes}"),
                _ => panic!("a plain text is read in pieces of {piece_bytes} bytes"),
            }
        }
    }

    #[test]
    fn a_one_line_file_without_a_line_end_is_plain_with_or_without_a_byte_order_mark() {
        for text in [&b"\xef\xbb\xbf1 2 3"[..], b"1 2 3"] {
            match read_in_pieces(text, 16) {
                Some(Input::Plain(profiles)) => assert_eq!(profiles.len(), 1),
                _ => panic!("{:?} is plain", String::from_utf8_lossy(text)),
            }
        }
    }

    #[test]
    fn anything_but_plain_text_in_pieces_is_left_to_be_read_whole() {
        let late_token = [&b"1 2 3\n".repeat(20)[..], b"4 007 5\n"].concat();
        let long_line = b"1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n";
        for (text, piece_bytes) in [
            (&late_token[..], 16),
            (&long_line[..], 16),
            (br#"{"profiles": [[1]]}"#, 16),
            (b"\n \n", 16),
            (b"1 2 \xff\n", 16),
        ] {
            assert!(
                read_in_pieces(text, piece_bytes).is_none(),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn a_file_past_max_body_is_too_large_in_pieces_too() {
        let text = b"1 2 3\n".repeat(10);
        let read = read_plain(&mut &text[..], 59, &LIMITS, 16).unwrap();
        assert!(matches!(read, Some(Input::TooLarge)));
        let read = read_plain(&mut &text[..], 60, &LIMITS, 16).unwrap();
        assert!(matches!(read, Some(Input::Plain(_))));
    }

    proptest::proptest! {
        /// Whatever the text and the size of the pieces, what the pieces give is what
        /// the whole text gives.
        #[test]
        fn pieces_agree_with_the_whole(
            text in "[0-9 \r\nx]{0,60}",
            piece_bytes in 4usize..24,
        ) {
            if let Some(Input::Plain(profiles)) = read_in_pieces(text.as_bytes(), piece_bytes) {
                proptest::prop_assert_eq!(Ok(profiles), wall::parse_text(text.as_bytes(), &LIMITS));
            }
        }
    }
}

//! `icewall simulate`: runs one simulation in-process and prints the summary, the team
//! log, a per-day table or the API's summary JSON.

use std::fs;
use std::io::{self, Read, Write};
use std::num::NonZeroU64;
use std::path::PathBuf;

use thousands::Separable;

use crate::wall::{self, ConfigError, Limits, Summary, WorkTables};

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
    let input = read_input(args).map_err(|source| SimulateError::Read {
        path: path.clone(),
        source,
    })?;
    if input.len() as u64 > args.max_body {
        return Err(SimulateError::TooLarge {
            path,
            limit: args.max_body,
        });
    }
    let limits = Limits {
        max_sections_per_profile: args.max_profile_sections,
        max_sections: args.max_sections,
    };
    let config = wall::parse_config(&input, &limits)
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

/// At most one byte past `--max-body`, which is enough to tell that the input is too
/// large without reading the rest of an endless one (`/dev/zero`, a pipe). A file's
/// buffer is allocated once at its size: grown piece by piece, it would be copied and
/// touched again (the input is the largest allocation of a run).
fn read_input(args: &SimulateArgs) -> io::Result<Vec<u8>> {
    let limit = args.max_body.saturating_add(1);
    let (source, size): (Box<dyn Read>, u64) = if args.file.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), 0)
    } else {
        let file = fs::File::open(&args.file)?;
        let size = file.metadata()?.len();
        (Box::new(file), size)
    };
    // One byte more than the file, so that the read which finds its end needs no room.
    let capacity = size.saturating_add(1).min(limit);
    let mut input = Vec::with_capacity(usize::try_from(capacity).unwrap_or(usize::MAX));
    source.take(limit).read_to_end(&mut input)?;
    Ok(input)
}

/// The readable summary: totals with thousands separators, then a row per profile.
///
/// # Errors
/// Whatever `out` returns.
pub fn write_summary(summary: &Summary, out: &mut impl Write) -> io::Result<()> {
    let builders = match summary.num_teams {
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

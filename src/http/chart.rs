//! `GET /api/jobs/<id>/chart`: a done job's charts reduced to what a screen can show
//! (at most `width` buckets per series), computed from the stored step functions and
//! the team log, read a few records or a line at a time.

use std::io::{BufRead, BufReader, Read};

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::bodies::{ErrorBody, ok_json};
use super::endpoint::PathParams;
use super::job_results::done_job;
use super::lookup::{decimal, read_stored};
use super::{ApiError, ApiState};
use crate::jobs::{JobId, Jobs, StoreError, StoredWork};
use crate::wall::{
    Buckets, COST_PER_FOOT, GanttBuilder, GanttRow, ICE_PER_FOOT, Table, WorkSource,
    largest_profiles,
};

/// Profiles stacked on their own in the ice chart; the rest are summed as "others".
/// More would not tell apart on a screen.
const STACKED_PROFILES: usize = 8;
/// Summary rows read at a time while looking for the largest profiles.
const ROWS_PER_READ: usize = 4096;
/// The longest line the team log can hold (a line with every number at its largest is
/// under 100 bytes); a longer one means the log is damaged.
const MAX_LOG_LINE: u64 = 256;

#[derive(Deserialize)]
pub struct ChartQuery {
    width: Option<String>,
}

/// Cubic yards of ice used in each bucket by one profile, or by the profiles not
/// stacked on their own.
#[derive(Serialize, ToSchema)]
pub struct IceSeries {
    /// `null`: the others.
    #[schema(nullable, minimum = 1)]
    profile: Option<usize>,
    /// How many profiles the series sums (1 but for the others).
    profiles: usize,
    ice: Vec<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct TeamChart {
    num_teams: u64,
    /// Teams 1 to `min(num_teams, --max-gantt-teams)`.
    rows: Vec<GanttRow>,
}

/// A done job's charts, reduced to at most `width` buckets per series.
#[derive(Serialize, ToSchema)]
pub struct Chart {
    /// Days the wall took.
    days: u64,
    /// Days per bucket: bucket `k` (from 0) holds days `k * bucket_days + 1` to
    /// `min((k + 1) * bucket_days, days)`.
    bucket_days: u64,
    /// Buckets per series.
    buckets: usize,
    /// The largest profiles by ice (at most 8), then the others summed, if any.
    ice: Vec<IceSeries>,
    /// Gold Dragons spent on the wall through each bucket's last day.
    cost: Vec<u64>,
    /// In team mode, the Gantt; `null` for unlimited crews.
    #[schema(nullable)]
    teams: Option<TeamChart>,
}

#[utoipa::path(get, path = "/api/jobs/{id}/chart", operation_id = "job_chart", params(
    ("id" = String, Path, format = Uuid, description = "A job id, as POST /api/simulate returned it"),
    ("width" = Option<u64>, Query, minimum = 1, description = "Most buckets per series (the chart's width in pixels will do); 1000 by default, at most --max-chart-width"),
), responses(
    (status = 200, description = "The job's charts: the days cut into at most `width` equal buckets of `bucket_days` days; per bucket, the ice of the largest profiles and of the others (exact sums over the bucket), the wall's cost through its last day, and in team mode one Gantt row per team (the first --max-gantt-teams)", body = Chart),
    (status = 400, description = "A bad width, or an unknown parameter", body = ErrorBody),
    (status = 404, description = "Unknown or malformed job id", body = ErrorBody),
    (status = 409, description = "The job is not done", body = ErrorBody),
    (status = 500, description = "The stored result cannot be read", body = ErrorBody), (status = 503, description = "The stored result cannot be read now (out of file descriptors or memory; in cluster mode, the database did not answer): retry", body = ErrorBody)))]
pub async fn chart(
    path: PathParams,
    query: web::Query<ChartQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let max = state.max_chart_width;
    let width = match query.width.as_deref() {
        None => max.min(1000),
        Some(text) => decimal(text)
            .and_then(|width| usize::try_from(width).ok())
            .filter(|width| (1..=max).contains(width))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "width must be an integer in 1..={max} (the server's --max-chart-width)"
                ))
            })?,
    };
    let id = done_job(&state, path.get("id")).await?;
    let gantt_teams = state.max_gantt_teams;
    let chart = read_stored(&state, id, move |jobs| build(jobs, id, width, gantt_teams)).await?;
    Ok(ok_json(&chart))
}

fn overflow() -> StoreError {
    StoreError::Damaged("its numbers overflow".to_owned())
}

/// Feet built by `table` on days `1..=day`.
fn feet_through(work: &StoredWork, table: Table, day: u64) -> Result<u64, StoreError> {
    work.step_on(table, day)?
        .map_or(Some(0), |step| step.feet_through(day))
        .ok_or_else(overflow)
}

fn build(jobs: &Jobs, id: JobId, width: usize, gantt_teams: usize) -> Result<Chart, StoreError> {
    let (head, profile_count) = jobs.summary(id, 0, 0)?;
    let buckets = Buckets::new(head.days, width);
    let mut unread = None;
    let rows = (0..profile_count)
        .step_by(ROWS_PER_READ)
        .map_while(|first| match jobs.summary(id, first, ROWS_PER_READ) {
            Ok((page, _)) => Some(page.profiles),
            Err(error) => {
                unread = Some(error);
                None
            }
        })
        .flatten();
    let stacked = largest_profiles(rows, STACKED_PROFILES);
    if let Some(error) = unread {
        return Err(error);
    }
    let work = jobs.work(id)?;
    let ice_of = |table| -> Result<Vec<u64>, StoreError> {
        let feet = buckets.integrate(|day| feet_through(&work, table, day))?;
        feet.into_iter()
            .map(|feet| feet.checked_mul(ICE_PER_FOOT).ok_or_else(overflow))
            .collect()
    };
    let mut ice = Vec::with_capacity(stacked.len() + 1);
    for &profile in &stacked {
        ice.push(IceSeries {
            profile: Some(profile),
            profiles: 1,
            ice: ice_of(Table::Profile(profile))?,
        });
    }
    if profile_count > stacked.len() {
        // The wall's own steps less the stacked ones: exact, and O(buckets) to read.
        let mut others = ice_of(Table::Wall)?;
        for series in &ice {
            for (left, taken) in others.iter_mut().zip(&series.ice) {
                *left = left.saturating_sub(*taken);
            }
        }
        ice.push(IceSeries {
            profile: None,
            profiles: profile_count - stacked.len(),
            ice: others,
        });
    }
    let cost = buckets
        .sample(|day| feet_through(&work, Table::Wall, day))?
        .into_iter()
        .map(|feet| feet.checked_mul(COST_PER_FOOT).ok_or_else(overflow))
        .collect::<Result<_, _>>()?;
    let teams = match head.num_teams {
        None => None,
        Some(num_teams) => {
            let rows = usize::try_from(num_teams)
                .unwrap_or(usize::MAX)
                .min(gantt_teams);
            Some(TeamChart {
                num_teams,
                rows: gantt(jobs, id, buckets, rows)?,
            })
        }
    };
    Ok(Chart {
        days: head.days,
        bucket_days: buckets.width(),
        buckets: buckets.len(),
        ice,
        cost,
        teams,
    })
}

/// The Gantt of teams `1..=rows`, from the team log streamed a line at a time.
fn gantt(
    jobs: &Jobs,
    id: JobId,
    buckets: Buckets,
    rows: usize,
) -> Result<Vec<GanttRow>, StoreError> {
    let (log, _) = jobs.team_log(id)?;
    let mut log = BufReader::with_capacity(256 * 1024, log);
    let mut builder = GanttBuilder::new(buckets, rows);
    let mut line = Vec::with_capacity(MAX_LOG_LINE as usize);
    loop {
        line.clear();
        let read = (&mut log).take(MAX_LOG_LINE).read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(builder.finish());
        }
        let Some(text) = line.strip_suffix(b"\n") else {
            return Err(StoreError::Damaged(
                "its team log has an overlong or unended line".to_owned(),
            ));
        };
        builder
            .line(text)
            .map_err(|error| StoreError::Damaged(error.to_string()))?;
    }
}

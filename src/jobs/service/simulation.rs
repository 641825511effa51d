//! A job's simulation on a worker: its wall read from the request it carried or else
//! from the journal (once: the bytes go on to the result, which keeps them), and a
//! panic caught and made the job's failure, so that the worker lives on.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

use super::LocalJobs;
use crate::jobs::JobId;
use crate::jobs::registry::WallShape;
use crate::jobs::storage::{Storage, StoredRequest};
use crate::wall::{self, Limits, Outcome, WallConfig};

impl LocalJobs {
    /// Simulates the job's wall; the reason it failed, if it did, panics included, and
    /// the request's bytes, when they could be read.
    pub(super) fn simulate(
        &self,
        id: JobId,
        request: &StoredRequest,
        body: Option<Vec<u8>>,
    ) -> (Result<Outcome, String>, Option<Vec<u8>>) {
        let mut bytes = None;
        let simulated = caught(|| {
            let read = match body {
                Some(body) => body,
                None => self
                    .inner
                    .store
                    .read_request(request)
                    .map_err(|error| format!("the stored request cannot be read: {error}"))?,
            };
            let config = parse_request(bytes.insert(read))?;
            if let Some(shape) = WallShape::of(&config) {
                self.inner.registry.describe(id, shape);
            }
            self.inner.debug.apply(&config);
            Ok(wall::simulate(&config))
        });
        (simulated, bytes)
    }
}

/// The job's wall, from its request's bytes.
fn parse_request(bytes: &[u8]) -> Result<WallConfig, String> {
    wall::parse_json(bytes, &Limits::engine_bounds())
        .map_err(|error| format!("the stored request is damaged: {error}"))
}

/// Runs a job's simulation with a panic caught and made its failure (either mode's
/// workers use it).
pub(crate) fn caught(
    simulation: impl FnOnce() -> Result<Outcome, String>,
) -> Result<Outcome, String> {
    panic::catch_unwind(AssertUnwindSafe(simulation)).unwrap_or_else(|payload| {
        Err(format!(
            "the simulation panicked: {}",
            panic_message(&*payload)
        ))
    })
}

/// The text a panic was raised with, for the failure reason of the job that raised it.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "no message".to_owned()
    }
}

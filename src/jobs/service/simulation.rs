//! A job's simulation on a worker: its wall as the request it carried was parsed at
//! accept, or else read from the journal and parsed (once: the bytes go on to the
//! result, which keeps them), a journal that cannot be read now told from a damaged
//! one, and a panic caught and made the job's failure, so that the worker lives on.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

use super::LocalJobs;
use super::queue::KeptRequest;
use crate::jobs::registry::WallShape;
use crate::jobs::storage::{Storage, StoredRequest};
use crate::jobs::{JobId, StoreError};
use crate::wall::{self, Limits, Outcome, WallConfig};

/// What became of a job on its worker.
pub(super) enum Simulation {
    /// It ran, or failed for good: the outcome, and the request's bytes when they
    /// could be read (the result keeps them).
    Ran {
        outcome: Result<Outcome, String>,
        request: Option<Vec<u8>>,
    },
    /// Its request could not be read now (a disk error, not damage): it did not run,
    /// and a restart runs it again.
    Unread(StoreError),
}

impl LocalJobs {
    /// Simulates the job's wall, as `kept` with the job or else from its stored request.
    pub(super) fn simulate(
        &self,
        id: JobId,
        request: &StoredRequest,
        kept: Option<KeptRequest>,
    ) -> Simulation {
        let (bytes, parsed) = match kept {
            Some(KeptRequest { json, wall }) => (json, wall),
            None => match self.inner.store.read_request(request) {
                Ok(bytes) => (bytes, None),
                Err(StoreError::Damaged(damage)) => {
                    return Simulation::Ran {
                        outcome: Err(format!("the stored request is damaged: {damage}")),
                        request: None,
                    };
                }
                Err(error) => return Simulation::Unread(error),
            },
        };
        let outcome = caught(|| {
            let config = match parsed {
                Some(wall) => wall,
                None => parse_request(&bytes)?,
            };
            if let Some(shape) = WallShape::of(&config) {
                self.inner.registry.describe(id, shape);
            }
            self.inner.debug.apply(&config);
            Ok(wall::simulate(&config))
        });
        Simulation::Ran {
            outcome,
            request: Some(bytes),
        }
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

/// The text a panic was raised with: the failure reason of the job that raised it, or
/// the log line of a sweep that did.
pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "no message".to_owned()
    }
}

//! Request ids (`X-Request-Id`): a client's own, or a UUIDv7 made up without a lock, a
//! random number per id or an allocation per echoed header, as every request without
//! one needs one.

use std::cell::RefCell;

use actix_web::http::header::HeaderValue;
use actix_web::web::{Bytes, BytesMut};

/// Made ids written into one buffer, each a shared slice of it: one allocation per this
/// many ids rather than per id.
const IDS_PER_BUFFER: usize = 256;

const ID_LENGTH: usize = uuid::fmt::Simple::LENGTH;

/// The id of an HTTP request, from its `X-Request-Id` or made up, set by the request
/// middleware and carried on the log lines of the request and its job. A client's is
/// the header it sent, shared with the request; a made one is kept inline (a log line
/// holds it on the log thread, where dropping a shared one would cost more).
#[derive(Clone, Debug)]
pub enum RequestId {
    Given(HeaderValue),
    Made(MadeId),
}

/// A made id's text: hex digits, as only `IdMaker::next_id` makes one (its header
/// value is made without a look at its bytes).
#[derive(Clone, Debug)]
pub struct MadeId([u8; ID_LENGTH]);

impl RequestId {
    /// The client's id if it is 1 to 128 visible ASCII characters; a new one otherwise.
    pub fn from_header(value: Option<&HeaderValue>) -> RequestId {
        let valid = |id: &&HeaderValue| {
            (1..=128).contains(&id.len()) && id.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b))
        };
        match value.filter(valid) {
            Some(id) => RequestId::Given(id.clone()),
            None => RequestId::Made(MAKER.with(|maker| maker.borrow_mut().next_id())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in (see `from_header`), and a made id is hex digits.
        match self {
            RequestId::Given(id) => id.to_str().unwrap_or_default(),
            RequestId::Made(MadeId(text)) => std::str::from_utf8(text).unwrap_or_default(),
        }
    }

    /// The id as the header it is echoed in; a made one is written into a buffer it
    /// shares with others.
    pub fn header_value(&self) -> HeaderValue {
        match self {
            RequestId::Given(id) => id.clone(),
            RequestId::Made(text) => MAKER.with(|maker| maker.borrow_mut().header_value(text)),
        }
    }
}

thread_local! {
    static MAKER: RefCell<IdMaker> = RefCell::new(IdMaker::new());
}

/// Makes the ids of one thread: the time in milliseconds, then random bits drawn once
/// per thread and a counter (RFC 9562's UUIDv7 with a dedicated counter), so that ids
/// sort by time and differ between threads and restarts.
struct IdMaker {
    random: [u8; 6],
    counter: u32,
    /// The text of the last id made, whose first 24 digits (the millisecond and the
    /// random bits) the next id of the same millisecond shares: only the counter's 8
    /// are written anew.
    last: Option<(u64, MadeId)>,
    headers: BytesMut,
}

/// Where the counter's hex digits begin in a made id: its last four bytes.
const COUNTER_DIGITS: usize = ID_LENGTH - 8;

impl IdMaker {
    fn new() -> IdMaker {
        let mut random = [0; 6];
        random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..6]);
        IdMaker {
            random,
            counter: 0,
            last: None,
            headers: BytesMut::new(),
        }
    }

    fn next_id(&mut self) -> MadeId {
        self.counter = self.counter.wrapping_add(1);
        if self.counter == 0 {
            // 2^32 ids in: new random bits, so that no id comes twice.
            *self = IdMaker::new();
        }
        // To the tick: the counter orders the ids of one millisecond, or of one tick.
        let millis = crate::coarse_clock::unix_millis();
        if let Some((last_millis, MadeId(last))) = &mut self.last
            && *last_millis == millis
        {
            write_hex(&mut last[COUNTER_DIGITS..], &self.counter.to_be_bytes());
            return MadeId(*last);
        }
        let mut random = [0; 10];
        random[..6].copy_from_slice(&self.random);
        random[6..].copy_from_slice(&self.counter.to_be_bytes());
        let mut text = [0; ID_LENGTH];
        uuid::Builder::from_unix_timestamp_millis(millis, &random)
            .into_uuid()
            .simple()
            .encode_lower(&mut text);
        self.last = Some((millis, MadeId(text)));
        MadeId(text)
    }

    fn header_value(&mut self, MadeId(text): &MadeId) -> HeaderValue {
        if self.headers.capacity() < ID_LENGTH {
            self.headers = BytesMut::with_capacity(ID_LENGTH * IDS_PER_BUFFER);
        }
        self.headers.extend_from_slice(text);
        let written: Bytes = self.headers.split_to(ID_LENGTH).freeze();
        // SAFETY: the bytes are the 32 hex digits of a `MadeId`, each a visible ASCII
        // character, which is all that a header value must be (and which the checked
        // constructor would look at, byte by byte: a fifth of a request id's cost). In a
        // debug build, `http` checks them all the same.
        unsafe { HeaderValue::from_maybe_shared_unchecked(written) }
    }
}

/// `bytes` as lowercase hex digits into `digits`, two a byte, as a UUID's text has them.
fn write_hex(digits: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in digits.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_uuid_v7_in_order_and_distinct() {
        let ids: Vec<String> = (0..IDS_PER_BUFFER * 3)
            .map(|_| {
                let id = RequestId::from_header(None);
                assert_eq!(id.header_value().to_str().unwrap(), id.as_str());
                id.as_str().to_owned()
            })
            .collect();
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 7, "{id}");
            assert_eq!(id.len(), 32, "{id}");
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted, ids,
            "made ids sort in the order they were made, once each"
        );
        let elsewhere = std::thread::spawn(|| RequestId::from_header(None).as_str().to_owned())
            .join()
            .unwrap();
        assert!(!ids.contains(&elsewhere));
        assert_ne!(
            elsewhere[12..24],
            ids[0][12..24],
            "each thread has its own random bits"
        );
    }

    #[test]
    fn an_id_of_the_same_millisecond_is_the_uuid_that_its_time_random_bits_and_counter_make() {
        let mut maker = IdMaker::new();
        let mut same_millisecond = 0;
        for _ in 0..20_000 {
            let before = maker.last.as_ref().map(|(millis, _)| *millis);
            let MadeId(text) = maker.next_id();
            let (millis, _) = maker.last.as_ref().unwrap();
            same_millisecond += usize::from(before == Some(*millis));
            let mut random = [0; 10];
            random[..6].copy_from_slice(&maker.random);
            random[6..].copy_from_slice(&maker.counter.to_be_bytes());
            let whole = uuid::Builder::from_unix_timestamp_millis(*millis, &random).into_uuid();
            assert_eq!(
                std::str::from_utf8(&text).unwrap(),
                whole.simple().to_string()
            );
        }
        assert!(same_millisecond > 0, "no two ids in one millisecond");
    }

    #[test]
    fn a_client_id_is_kept_only_if_it_is_visible_ascii_of_at_most_128() {
        let given = HeaderValue::from_static("trace-4711");
        assert_eq!(RequestId::from_header(Some(&given)).as_str(), "trace-4711");
        for refused in ["", "with space", &"x".repeat(129)] {
            let value = HeaderValue::from_str(refused).unwrap();
            assert_eq!(RequestId::from_header(Some(&value)).as_str().len(), 32);
        }
    }
}

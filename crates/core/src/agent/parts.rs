//! The run's events: AI SDK full-stream parts wrapped in Mastra's event
//! shape (see `wire::EVENT_FIELDS`, as CachingPubSub stores it too).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::wire::{event_text, CHUNK};

/// Builds event texts for one run, with ids unique across its attempts.
pub struct EventWriter {
    run_id_json: String,
    /// The JSON text of the ids' common start, without its closing quote
    /// (a run id may hold characters JSON escapes): escaped once, not per event.
    id_open: String,
    seq: u64,
}

impl EventWriter {
    /// `attempt` distinguishes drivers of the same run (the state version a
    /// driver started from), so ids never repeat across resumes.
    pub fn new(run_id: &str, attempt: u64) -> Self {
        EventWriter {
            run_id_json: serde_json::to_string(run_id).expect("strings serialise"),
            id_open: {
                let mut quoted = serde_json::to_string(&format!("{run_id}:{attempt}:")).expect("strings serialise");
                quoted.pop();
                quoted
            },
            seq: 0,
        }
    }

    /// An event whose `data` is `data_json` (trusted JSON text).
    pub fn event(&mut self, kind: &str, data_json: &str) -> String {
        self.seq += 1;
        let id = format!("{}{}\"", self.id_open, self.seq);
        let kind = serde_json::to_string(kind).expect("strings serialise");
        event_text(&id, &kind, &self.run_id_json, data_json, now_ms())
    }

    pub fn chunk(&mut self, part: &Value) -> String {
        self.event(CHUNK, &part.to_string())
    }
}

/// `{"type":"error","error":{"name","message"}}`.
pub fn error_part(name: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "name": name, "message": message } })
}

/// Now in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// Now as ISO 8601 UTC with milliseconds, as JS `Date#toISOString` writes it.
pub fn iso_now() -> String {
    iso(now_ms())
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_matches_javascript() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        // Date.UTC(2026, 10, 27, 23, 59, 59, 999)
        assert_eq!(iso(1_795_823_999_999), "2026-11-27T23:59:59.999Z");
        // A leap day: new Date(Date.UTC(2024, 1, 29, 12, 30, 5, 7)).toISOString()
        assert_eq!(iso(1_709_209_805_007), "2024-02-29T12:30:05.007Z");
    }

    #[test]
    fn events_have_unique_ids_and_the_mastra_shape() {
        let mut w = EventWriter::new("run-1", 3);
        let a: Value = serde_json::from_str(&w.chunk(&json!({"type": "start"}))).unwrap();
        let b: Value = serde_json::from_str(&w.event(crate::wire::SUSPENDED, "{}")).unwrap();
        assert_eq!(a["id"], "run-1:3:1");
        assert_eq!(b["id"], "run-1:3:2");
        assert_eq!(a["type"], "chunk");
        assert_eq!(a["runId"], "run-1");
        assert_eq!(a["data"]["type"], "start");
        assert!(a["createdAt"].as_i64().is_some_and(|ms| ms > 1_700_000_000_000));
    }
}

//! The inbox envelope: what webhook-ingest puts on the inbox (or parking) queue.
//!
//! ```json
//! {"v":1,"trace_id":"…","dedup_id":"t-…","received_at_ms":1763776468123,
//!  "source":"cafe24-webhook","event_no":90023,"mall_id":"shop1","parked":null,
//!  "payload":{ …the webhook body, byte for byte… }}
//! ```
//! The payload is embedded as raw JSON, not as an escaped string and not re-serialised, so the
//! dispatcher sees exactly what Cafe24 sent and the size overhead is a fixed few hundred bytes.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::{DedupId, MallId, TraceId};
use crate::webhook::{Classified, EventNo, ParkReason};

/// Current envelope format version. Readers must refuse versions they do not know.
pub const ENVELOPE_VERSION: u32 = 1;

/// `source` of envelopes made from Cafe24 webhooks.
pub const SOURCE_CAFE24_WEBHOOK: &str = "cafe24-webhook";

/// Largest SQS message body (standard limit; the envelope must fit below it).
pub const SQS_MAX_MESSAGE_BYTES: usize = 262_144;

/// Upper bound of the envelope's own fields around the payload (ids are length-capped).
pub const ENVELOPE_OVERHEAD_MAX_BYTES: usize = 1_024;

/// Largest webhook body that always fits in one SQS message once wrapped.
pub const MAX_WEBHOOK_BODY_BYTES: usize = SQS_MAX_MESSAGE_BYTES - ENVELOPE_OVERHEAD_MAX_BYTES;

/// One received webhook, as queued.
#[derive(Debug, Serialize, Deserialize)]
pub struct InboxEnvelope {
    /// Format version ([`ENVELOPE_VERSION`]).
    pub v: u32,
    /// Follows the webhook through all functions.
    pub trace_id: TraceId,
    /// The SQS dedup id the envelope was sent with.
    pub dedup_id: DedupId,
    /// When ingest received it, epoch milliseconds (ingest's clock).
    pub received_at_ms: u64,
    /// Where it came from ([`SOURCE_CAFE24_WEBHOOK`]).
    pub source: String,
    /// The event number, when readable.
    pub event_no: Option<EventNo>,
    /// The mall, when readable.
    pub mall_id: Option<MallId>,
    /// Set when the webhook was parked instead of routed.
    pub parked: Option<ParkReason>,
    /// The webhook body exactly as received.
    pub payload: Box<RawValue>,
}

/// The envelope could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not UTF-8 JSON (callers classify first, so this means a caller bug or a
    /// body that changed between checks).
    #[error("payload is not valid JSON")]
    Payload(#[source] serde_json::Error),
    /// The serialized envelope exceeds [`SQS_MAX_MESSAGE_BYTES`].
    #[error("envelope of {0} bytes exceeds the SQS message limit")]
    TooLarge(usize),
}

impl InboxEnvelope {
    /// Wraps a classified webhook body.
    pub fn new(
        trace_id: TraceId,
        dedup_id: DedupId,
        received_at_ms: u64,
        classified: &Classified,
        body: &[u8],
    ) -> Result<Self, EnvelopeError> {
        let text = String::from_utf8(body.to_vec()).map_err(|e| EnvelopeError::Payload(serde::de::Error::custom(e)))?;
        let payload = RawValue::from_string(text).map_err(EnvelopeError::Payload)?;
        let (event_no, mall_id, parked) = match classified {
            Classified::Routable { event_no, mall_id } => (Some(*event_no), Some(mall_id.clone()), None),
            Classified::Parked { reason, event_no, mall_id } => (*event_no, mall_id.clone(), Some(*reason)),
        };
        Ok(Self {
            v: ENVELOPE_VERSION,
            trace_id,
            dedup_id,
            received_at_ms,
            source: SOURCE_CAFE24_WEBHOOK.to_owned(),
            event_no,
            mall_id,
            parked,
            payload,
        })
    }

    /// Serializes, refusing anything that would not fit in one SQS message.
    pub fn to_message_body(&self) -> Result<String, EnvelopeError> {
        let s = serde_json::to_string(self).map_err(EnvelopeError::Payload)?;
        if s.len() > SQS_MAX_MESSAGE_BYTES {
            return Err(EnvelopeError::TooLarge(s.len()));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::classify;

    #[test]
    fn payload_is_embedded_byte_for_byte() {
        let body = br#"{ "event_no": "90023",  "resource": {"mall_id":"Shop1","x":"\u00e9"} }"#;
        let (_, c) = classify(body).unwrap();
        let env = InboxEnvelope::new(TraceId::from_body(body), DedupId::for_webhook(None, body), 7, &c, body).unwrap();
        let s = env.to_message_body().unwrap();
        assert!(s.contains(std::str::from_utf8(body).unwrap()), "{s}");
        let back: InboxEnvelope = serde_json::from_str(&s).unwrap();
        assert_eq!(back.payload.get().as_bytes(), body);
        assert_eq!(back.mall_id.unwrap().as_str(), "shop1");
        assert_eq!(back.event_no, Some(EventNo(90023)));
        assert_eq!(back.v, ENVELOPE_VERSION);
        assert!(back.parked.is_none());
    }

    #[test]
    fn largest_allowed_body_fits_in_one_message() {
        // Worst case: longest ids; a string body of the maximal size.
        let filler = "a".repeat(MAX_WEBHOOK_BODY_BYTES - 2);
        let body = format!("\"{filler}\"");
        assert_eq!(body.len(), MAX_WEBHOOK_BODY_BYTES);
        let (_, c) = classify(body.as_bytes()).unwrap();
        let env = InboxEnvelope::new(
            TraceId::from_header(&"t".repeat(TraceId::MAX_VERBATIM_LEN)).unwrap(),
            DedupId::for_webhook(Some(&"x".repeat(500)), body.as_bytes()),
            u64::MAX,
            &c,
            body.as_bytes(),
        )
        .unwrap();
        assert!(env.to_message_body().is_ok());
    }
}

//! A hand-written decoder of WAL record payloads (postcard `BatchHeader` then postcard
//! `Vec<Event>`, see [`super::format`]).
//!
//! Replay decodes every acknowledged event that was not sealed, and going through serde's
//! visitors cost about a quarter of it. This reads the same bytes directly: the wire format is
//! postcard's, which is specified and stable, so the encoder stays `postcard::to_extend` and the
//! golden files and a property test (`engine/tests/wal_recovery.rs`) pin that both agree.
//!
//! Postcard, as used here: unsigned integers and lengths are LEB128 varints (at most 10 bytes
//! for 64 bits), `i64` is a zigzag varint, `Option` is a byte `0` (none) or `1` followed by the
//! value, a `String` its varint byte length and UTF-8 bytes, a unit enum variant its varint
//! index in declaration order, and a struct its fields in declaration order.
//!
//! ```
//! use auditlog_engine::event::Event;
//! use auditlog_engine::wal::format::{encode_batch_header, encode_events, BatchHeader};
//! use auditlog_engine::wal::payload::decode_payload;
//! let event = Event { tenant: "acct_1".into(), action: "create".into(), ..Event::default() };
//! let header = BatchHeader { first_seq: 7, received_us: 1, tenant_seqs: vec![3] };
//! let mut payload = encode_batch_header(&header);
//! payload.extend(encode_events(std::slice::from_ref(&event)));
//! let stored = decode_payload(&payload).unwrap();
//! assert_eq!((stored[0].seq, stored[0].tenant_seq, &stored[0].event), (7, 3, &event));
//! ```

use crate::event::{Actor, ActorType, Event, Outcome, Resource, StoredEvent, Text};

/// Decodes a record payload into stored events, or a reason it is malformed. Events are decoded
/// one by one straight into their `StoredEvent` (no intermediate `Vec<Event>`).
pub fn decode_payload(payload: &[u8]) -> Result<Vec<StoredEvent>, String> {
    let mut reader = Reader {
        bytes: payload,
        pos: 0,
    };
    let first_seq = reader
        .varint()
        .map_err(|e| format!("bad batch header: {e}"))?;
    let received_us = reader
        .zigzag()
        .map_err(|e| format!("bad batch header: {e}"))?;
    let seq_count = reader
        .length()
        .map_err(|e| format!("bad batch header: {e}"))?;
    // Every varint takes at least a byte: a count larger than the bytes left is corrupt, and
    // checking it first keeps a damaged length from reserving memory it never fills.
    if seq_count > reader.remaining() {
        return Err(format!(
            "bad batch header: {seq_count} tenant seqs in {} bytes",
            reader.remaining()
        ));
    }
    let mut tenant_seqs = Vec::with_capacity(seq_count);
    for _ in 0..seq_count {
        tenant_seqs.push(
            reader
                .varint()
                .map_err(|e| format!("bad batch header: {e}"))?,
        );
    }
    let count = reader
        .length()
        .map_err(|e| format!("bad batch length: {e}"))?;
    if count != tenant_seqs.len() {
        return Err(format!(
            "batch holds {count} events but {} tenant seqs",
            tenant_seqs.len()
        ));
    }
    let mut events = Vec::with_capacity(count);
    for (i, &tenant_seq) in tenant_seqs.iter().enumerate() {
        let event = reader
            .event()
            .map_err(|e| format!("bad event {i} of batch: {e}"))?;
        events.push(StoredEvent {
            seq: first_seq + i as u64,
            tenant_seq,
            received_us,
            event,
        });
    }
    if reader.remaining() != 0 {
        return Err(format!(
            "{} bytes after the last event of the batch",
            reader.remaining()
        ));
    }
    Ok(events)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| format!("unexpected end at byte {}", self.pos))?;
        self.pos += 1;
        Ok(byte)
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, String> {
        let start = self.pos;
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            // The tenth byte holds only the top bit of a u64 (and so ends the varint).
            if shift == 63 && byte > 1 {
                return Err(format!("varint at byte {start} overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    #[inline]
    fn zigzag(&mut self) -> Result<i64, String> {
        let value = self.varint()?;
        Ok((value >> 1) as i64 ^ -((value & 1) as i64))
    }

    #[inline]
    fn length(&mut self) -> Result<usize, String> {
        let start = self.pos;
        let value = self.varint()?;
        usize::try_from(value).map_err(|_| format!("length at byte {start} does not fit"))
    }

    #[inline]
    fn variant(&mut self, what: &str, variants: u64) -> Result<u64, String> {
        let start = self.pos;
        let index = self.varint()?;
        if index >= variants {
            return Err(format!("{what} variant {index} at byte {start} is unknown"));
        }
        Ok(index)
    }

    #[inline]
    fn string(&mut self) -> Result<Text, String> {
        let start = self.pos;
        let len = self.length()?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("string of {len} bytes at byte {start} runs past the end"))?;
        let bytes = &self.bytes[self.pos..end];
        // Nearly every string is ASCII, which `is_ascii` checks a word at a time; the full
        // validation (slower on short strings) runs for the rest.
        let text = if bytes.is_ascii() {
            // SAFETY: ASCII is valid UTF-8.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        } else {
            std::str::from_utf8(bytes)
                .map_err(|e| format!("string at byte {start} is not UTF-8: {e}"))?
        };
        self.pos = end;
        Ok(Text::from(text))
    }

    #[inline]
    fn option_string(&mut self) -> Result<Option<Text>, String> {
        let start = self.pos;
        match self.byte()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            tag => Err(format!("option tag {tag} at byte {start}")),
        }
    }

    fn event(&mut self) -> Result<Event, String> {
        // Fields in the declaration order of `Event`, `Actor` and `Resource`.
        let id = self.option_string()?;
        let timestamp_us = self.zigzag()?;
        let tenant = self.string()?;
        let project = self.option_string()?;
        let actor = Actor {
            id: self.option_string()?,
            email: self.option_string()?,
            kind: match self.variant("actor type", 3)? {
                0 => ActorType::User,
                1 => ActorType::ApiToken,
                _ => ActorType::System,
            },
            ip: self.option_string()?,
            user_agent: self.option_string()?,
        };
        let action = self.string()?;
        let outcome = match self.variant("outcome", 2)? {
            0 => Outcome::Success,
            _ => Outcome::Failure,
        };
        let resource = Resource {
            kind: self.string()?,
            id: self.option_string()?,
            name: self.option_string()?,
        };
        let changes = self.option_string()?;
        let details = self.option_string()?;
        Ok(Event {
            id,
            timestamp_us,
            tenant,
            project,
            actor,
            action,
            outcome,
            resource,
            changes,
            details,
        })
    }
}

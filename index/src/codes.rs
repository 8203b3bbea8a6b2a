//! Integer codes of field values in a segment, shared by the filter index and the executor.
//!
//! Dictionary columns use their segment dictionary's codes (`0` = absent, `n` = the n-th value
//! in byte order). The two enum columns, `outcome` and `actor.type`, use the enum's code plus
//! one, so that `0` still means "absent".

use auditlog_engine::event::{ActorType, Outcome};
use auditlog_engine::segment::{Block, Column, Segment};
use auditlog_engine::Result;

/// The code of `value` in a column of `segment`, `Ok(None)` when the segment holds no such
/// value; an error when the column's dictionary cannot be decoded (the file changed since it
/// was opened).
pub fn value_code(segment: &Segment, column: Column, value: &str) -> Result<Option<u32>> {
    Ok(match column {
        Column::Outcome => Outcome::parse(value).map(|o| u32::from(o.code()) + 1),
        Column::ActorType => ActorType::parse(value).map(|t| u32::from(t.code()) + 1),
        _ => segment
            .dictionary(column)?
            .and_then(|dictionary| dictionary.code_of(value)),
    })
}

/// Inverse of [`value_code`].
pub fn code_value(segment: &Segment, column: Column, code: u32) -> Result<Option<&str>> {
    let enum_code = || u8::try_from(code.checked_sub(1)?).ok();
    Ok(match column {
        Column::Outcome => enum_code()
            .and_then(Outcome::from_code)
            .map(Outcome::as_str),
        Column::ActorType => enum_code()
            .and_then(ActorType::from_code)
            .map(ActorType::as_str),
        _ => segment
            .dictionary(column)?
            .and_then(|dictionary| dictionary.get(code)),
    })
}

/// The highest code a column of `segment` can hold.
pub fn max_code(segment: &Segment, column: Column) -> Result<u32> {
    Ok(match column {
        Column::Outcome | Column::ActorType => u32::from(u8::MAX) + 1,
        _ => segment
            .dictionary(column)?
            .map_or(0, |dictionary| dictionary.len() as u32),
    })
}

/// A decoded column seen as codes ([`value_code`]'s numbering).
pub enum Codes<'b> {
    Dictionary(&'b [u32]),
    Outcome(&'b [Outcome]),
    ActorType(&'b [ActorType]),
}

impl<'b> Codes<'b> {
    pub fn of(block: &'b Block, column: Column) -> Codes<'b> {
        match column {
            Column::Outcome => Codes::Outcome(block.outcomes()),
            Column::ActorType => Codes::ActorType(block.actor_types()),
            _ => Codes::Dictionary(block.codes(column)),
        }
    }

    #[inline]
    pub fn get(&self, row: usize) -> u32 {
        match self {
            Codes::Dictionary(codes) => codes[row],
            Codes::Outcome(values) => u32::from(values[row].code()) + 1,
            Codes::ActorType(values) => u32::from(values[row].code()) + 1,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Codes::Dictionary(codes) => codes.len(),
            Codes::Outcome(values) => values.len(),
            Codes::ActorType(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

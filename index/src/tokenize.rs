//! The tokenizer of full-text search, shared by the scan-based matcher of this crate and (in the
//! next step) the tantivy index, so that both agree on what a word is.
//!
//! Rules, applied to the text of one field at a time:
//!
//! 0. **JSON**: the documents `details` and `changes` have their string escapes decoded first
//!    ([`json_unescaped`]): they are stored as sent, and `caf\u00e9` means `café`.
//! 1. **Normalize**: every character is lowercased on its own ([`char::to_lowercase`], no
//!    context rules), so the same character always becomes the same text.
//! 2. **Atoms**: maximal runs of alphanumeric characters ([`char::is_alphanumeric`]) are the atoms,
//!    numbered 0, 1, 2, ... in order (their *positions*). Everything else separates atoms.
//! 3. **Whole tokens**: a maximal run of alphanumerics and [`CONNECTORS`] (`- _ . @ : / +`),
//!    trimmed of connectors at both ends, that holds two atoms or more is also emitted whole, at
//!    the position of its first atom: `llama-finetune-3`, `alice@example.com`, `pod_8fj2k`.
//!
//! Matching (see [`crate::text`]) is defined on atoms: a query word is itself tokenized, and its
//! atoms must appear at consecutive positions of one field. So `llama-finetune-3` is found by
//! `llama`, `finetune`, `llama-finetune`, `finetune-3` and the whole name, and
//! `alice@example.com` by `alice`, `example.com` and the whole address. Whole tokens do not
//! change what matches; an index can use them to answer a whole-name query with one term lookup
//! instead of a phrase.
//!
//! ```
//! use auditlog_index::tokenize::{atoms, normalize, tokens, TokenKind};
//! let text = normalize("Llama-Finetune-3");
//! assert_eq!(atoms(&text).collect::<Vec<_>>(), ["llama", "finetune", "3"]);
//! let whole: Vec<_> = tokens(&text).into_iter().filter(|t| t.kind != TokenKind::Atom).collect();
//! assert_eq!(whole[0].text, "llama-finetune-3");
//! assert_eq!(whole[0].position, 0);
//! ```

/// The text of a JSON document (`details`, `changes`) as search sees it: its string escapes
/// decoded, so that `caf\u00e9` is the word `café` and `rollback\nreason` two words, as they
/// read (documents are stored as sent, escapes included). Borrowed when there is no escape.
/// An escape that is not valid JSON is kept as written; a lone surrogate becomes U+FFFD.
///
/// ```
/// use auditlog_index::tokenize::json_unescaped;
/// assert_eq!(json_unescaped(r#"{"note":"caf\u00e9\nok"}"#), "{\"note\":\"café\nok\"}");
/// assert_eq!(json_unescaped(r#"{"a":"\ud83d\ude80"}"#), "{\"a\":\"🚀\"}");
/// assert!(matches!(json_unescaped("plain"), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn json_unescaped(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\\') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        let mut chars = escape[1..].chars();
        let (decoded, used) = match chars.next() {
            Some(c @ ('"' | '\\' | '/')) => (Some(c), 2),
            Some('b') => (Some('\u{8}'), 2),
            Some('f') => (Some('\u{c}'), 2),
            Some('n') => (Some('\n'), 2),
            Some('r') => (Some('\r'), 2),
            Some('t') => (Some('\t'), 2),
            Some('u') => match hex4(&escape[2..]) {
                Some(high @ 0xd800..=0xdbff) => {
                    let low = escape
                        .get(6..8)
                        .filter(|marker| *marker == "\\u")
                        .and_then(|_| hex4(&escape[8..]))
                        .filter(|low| (0xdc00..=0xdfff).contains(low));
                    match low {
                        Some(low) => {
                            let code = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
                            (char::from_u32(code), 12)
                        }
                        None => (Some(char::REPLACEMENT_CHARACTER), 6),
                    }
                }
                Some(code) => (
                    Some(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)),
                    6,
                ),
                None => (None, 1),
            },
            _ => (None, 1),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push('\\'),
        }
        rest = &escape[used..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// The value of 4 hex digits at the start of `text`.
fn hex4(text: &str) -> Option<u32> {
    let digits = text.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// Characters that join atoms into a whole token (they still separate atoms).
pub const CONNECTORS: [char; 7] = ['-', '_', '.', '@', ':', '/', '+'];

/// True for a character that is part of an atom.
#[inline]
pub fn is_atom_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// True for a character that joins atoms into a whole token.
#[inline]
pub fn is_connector(c: char) -> bool {
    CONNECTORS.contains(&c)
}

/// The text lowercased character by character. The matcher calls this once per field value;
/// the index builder, on every row's `details` and `changes`, borrows the text instead when
/// it [`is_normalized`].
pub fn normalize(text: &str) -> String {
    if is_normalized(text) {
        return text.to_owned();
    }
    text.chars().flat_map(char::to_lowercase).collect()
}

/// Whether [`normalize`] would return `text` unchanged (ASCII without capitals).
pub fn is_normalized(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
}

/// The atoms of a [`normalize`]d text, in order.
pub fn atoms(normalized: &str) -> impl Iterator<Item = &str> + '_ {
    normalized
        .split(|c: char| !is_atom_char(c))
        .filter(|atom| !atom.is_empty())
}

/// What a [`Token`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A run of alphanumerics.
    Atom,
    /// A run of atoms joined by connectors, holding `atoms` atoms (at least 2).
    Whole { atoms: u32 },
}

/// One token of a [`normalize`]d text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub text: &'a str,
    /// Position of the (first) atom.
    pub position: u32,
    /// Byte offset in the normalized text.
    pub offset: usize,
    pub kind: TokenKind,
}

/// Every token of a [`normalize`]d text: atoms in order, each whole token right after its last
/// atom.
pub fn tokens(normalized: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut position = 0u32;
    // The whole token being built: byte start, position of its first atom, atoms so far, and
    // the byte end of its last atom (connectors after it are not part of it).
    let mut whole: Option<(usize, u32, u32, usize)> = None;
    let mut atom_start: Option<usize> = None;
    fn flush_whole<'t>(
        whole: &mut Option<(usize, u32, u32, usize)>,
        out: &mut Vec<Token<'t>>,
        text: &'t str,
    ) {
        if let Some((start, first, count, end)) = whole.take() {
            if count >= 2 {
                out.push(Token {
                    text: &text[start..end],
                    position: first,
                    offset: start,
                    kind: TokenKind::Whole { atoms: count },
                });
            }
        }
    }
    for (offset, c) in normalized
        .char_indices()
        .chain(std::iter::once((normalized.len(), ' ')))
    {
        if is_atom_char(c) {
            if atom_start.is_none() {
                atom_start = Some(offset);
            }
            continue;
        }
        if let Some(start) = atom_start.take() {
            out.push(Token {
                text: &normalized[start..offset],
                position,
                offset: start,
                kind: TokenKind::Atom,
            });
            match whole.as_mut() {
                Some((_, _, count, end)) => {
                    *count += 1;
                    *end = offset;
                }
                None => whole = Some((start, position, 1, offset)),
            }
            position += 1;
        }
        if !is_connector(c) {
            flush_whole(&mut whole, &mut out, normalized);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wholes(text: &str) -> Vec<String> {
        let normalized = normalize(text);
        tokens(&normalized)
            .into_iter()
            .filter(|t| t.kind != TokenKind::Atom)
            .map(|t| t.text.to_owned())
            .collect()
    }

    fn atom_list(text: &str) -> Vec<String> {
        atoms(&normalize(text)).map(str::to_owned).collect()
    }

    #[test]
    fn tokenize_hyphenated_name_keeps_atoms_and_whole() {
        assert_eq!(atom_list("llama-finetune-3"), ["llama", "finetune", "3"]);
        assert_eq!(wholes("llama-finetune-3"), ["llama-finetune-3"]);
    }

    #[test]
    fn tokenize_email_keeps_atoms_and_whole() {
        assert_eq!(atom_list("Alice@Example.com"), ["alice", "example", "com"]);
        assert_eq!(wholes("Alice@Example.com"), ["alice@example.com"]);
    }

    #[test]
    fn tokenize_trims_connectors_and_splits_on_others() {
        assert_eq!(
            wholes(r#"{"name":"--pod_8fj2k.","note":"scale up"}"#),
            ["pod_8fj2k"]
        );
        assert_eq!(atom_list(r#"{"note":"scale up"}"#), ["note", "scale", "up"]);
        assert_eq!(wholes("a b"), Vec::<String>::new());
        assert_eq!(wholes("Mozilla/5.0 (X11)"), ["mozilla/5.0"]);
    }

    #[test]
    fn tokenize_positions_count_atoms() {
        let normalized = normalize("x llama-finetune y");
        let tokens = tokens(&normalized);
        let positions: Vec<(&str, u32)> = tokens.iter().map(|t| (t.text, t.position)).collect();
        assert_eq!(
            positions,
            [
                ("x", 0),
                ("llama", 1),
                ("finetune", 2),
                ("llama-finetune", 1),
                ("y", 3)
            ]
        );
    }

    #[test]
    fn tokenize_lowercases_unicode_per_character() {
        assert_eq!(atom_list("ÜNÏCODE Σ"), ["ünïcode", "σ"]);
        assert_eq!(normalize("already lower"), "already lower");
    }
}

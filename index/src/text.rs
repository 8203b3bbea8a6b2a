//! Full-text matching by scanning: what a [`TextTerm`] means, evaluated on field values.
//!
//! The text fields of an event are [`TEXT_FIELDS`]: `resource.name`, `resource.id`,
//! `actor.email`, `actor.id`, `action`, `project`, `actor.user_agent`, and the JSON text of
//! `details` and `changes` (keys and values alike). Each field is tokenized on its own by
//! [`crate::tokenize`], so a phrase never spans two fields.
//!
//! A term with atoms `t0 .. tn` (its text tokenized the same way) matches a field whose atoms
//! hold `t0 .. tn` at consecutive positions; for [`TextKind::Prefix`] the last atom of the field
//! need only start with `tn`. Words and phrases are the same test: `llama-finetune`,
//! `"llama finetune"` and `llama finetune` written as a phrase all ask for the atom `llama`
//! followed by `finetune`. An event matches a query's text when every plain term matches some
//! field and no negated term matches any.

use auditlog_engine::event::StoredEvent;
use auditlog_engine::segment::Column;

use crate::error::{Error, Result};
use crate::query::{TextKind, TextTerm, TEXT_TERMS_MAX};
use crate::tokenize::{atoms, json_unescaped, normalize};

/// The fields full-text search looks at, in the order [`event_texts`] returns them.
pub const TEXT_FIELDS: [&str; 9] = [
    "resource.name",
    "resource.id",
    "actor.email",
    "actor.id",
    "action",
    "project",
    "actor.user_agent",
    "details",
    "changes",
];

/// The segment columns of the [`TEXT_FIELDS`] held as dictionary codes (all but `details` and
/// `changes`).
pub const TEXT_DICTIONARY_COLUMNS: [Column; 7] = [
    Column::ResourceName,
    Column::ResourceId,
    Column::ActorEmail,
    Column::ActorId,
    Column::Action,
    Column::Project,
    Column::ActorUserAgent,
];

/// The values of an event's [`TEXT_FIELDS`].
pub fn event_texts(event: &StoredEvent) -> [Option<&str>; 9] {
    let e = &event.event;
    [
        e.resource.name.as_deref(),
        e.resource.id.as_deref(),
        e.actor.email.as_deref(),
        e.actor.id.as_deref(),
        Some(e.action.as_str()),
        e.project.as_deref(),
        e.actor.user_agent.as_deref(),
        e.details.as_deref(),
        e.changes.as_deref(),
    ]
}

/// True when `needle` occurs in `haystack`, ASCII letters compared without case.
fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if haystack.len() < needle.len() {
        return false;
    }
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let starts = &haystack[..=haystack.len() - needle.len()];
    memchr::memchr2_iter(lower, upper, starts)
        .any(|i| haystack[i + 1..i + needle.len()].eq_ignore_ascii_case(rest))
}

// One bit per term in a u64 mask.
const _: () = assert!(TEXT_TERMS_MAX <= 64);

#[derive(Debug, Clone)]
struct CompiledTerm {
    atoms: Vec<String>,
    prefix: bool,
}

impl CompiledTerm {
    fn matches(&self, field: &[&str]) -> bool {
        let n = self.atoms.len();
        if n == 0 || field.len() < n {
            return false;
        }
        let (last, head) = self.atoms.split_last().expect("at least one atom");
        field.windows(n).any(|window| {
            let (field_last, field_head) = window.split_last().expect("n >= 1");
            field_head.iter().zip(head).all(|(a, b)| *a == b)
                && if self.prefix {
                    field_last.starts_with(last.as_str())
                } else {
                    field_last == last
                }
        })
    }
}

/// The text terms of a query, compiled. Each term owns one bit of a `u64` mask: a field value's
/// mask has the bits of the terms it matches, and [`TextMatcher::accepts`] judges the OR of a
/// row's field masks.
#[derive(Debug, Clone, Default)]
pub struct TextMatcher {
    terms: Vec<CompiledTerm>,
    required: u64,
    forbidden: u64,
}

impl TextMatcher {
    /// Compiles the terms; a term without any atom is [`Error::EmptyTextTerm`].
    pub fn new(terms: &[TextTerm]) -> Result<TextMatcher> {
        if terms.len() > TEXT_TERMS_MAX {
            return Err(Error::TooManyTextTerms {
                found: terms.len(),
                limit: TEXT_TERMS_MAX,
            });
        }
        let mut matcher = TextMatcher::default();
        for (bit, term) in terms.iter().enumerate() {
            let normalized = normalize(&term.text);
            let atoms: Vec<String> = atoms(&normalized).map(str::to_owned).collect();
            if atoms.is_empty() {
                return Err(Error::EmptyTextTerm {
                    text: term.text.clone(),
                });
            }
            matcher.terms.push(CompiledTerm {
                atoms,
                prefix: term.kind == TextKind::Prefix,
            });
            if term.negated {
                matcher.forbidden |= 1 << bit;
            } else {
                matcher.required |= 1 << bit;
            }
        }
        Ok(matcher)
    }

    /// True when there is no term (every event matches).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The mask of the terms that match one field value.
    pub fn field_mask(&self, value: &str) -> u64 {
        if self.terms.is_empty() {
            return 0;
        }
        // Cheap pre-check for ASCII text (most JSON): a term can only match if its first atom
        // occurs in the value, ignoring ASCII case. (Not for other text: a non-ASCII character
        // may lowercase to an ASCII one.)
        if value.is_ascii()
            && !self
                .terms
                .iter()
                .any(|term| contains_ignore_ascii_case(value.as_bytes(), term.atoms[0].as_bytes()))
        {
            return 0;
        }
        let normalized = normalize(value);
        let field: Vec<&str> = atoms(&normalized).collect();
        let mut mask = 0;
        for (bit, term) in self.terms.iter().enumerate() {
            if term.matches(&field) {
                mask |= 1 << bit;
            }
        }
        mask
    }

    /// [`TextMatcher::field_mask`] of a JSON document (`details`, `changes`): its string
    /// escapes decoded first ([`json_unescaped`]).
    pub fn json_field_mask(&self, value: &str) -> u64 {
        if self.terms.is_empty() {
            return 0;
        }
        self.field_mask(&json_unescaped(value))
    }

    /// Whether a row whose field masks OR to `mask` matches the query's text.
    pub fn accepts(&self, mask: u64) -> bool {
        mask & self.required == self.required && mask & self.forbidden == 0
    }

    /// True when a row whose fields so far give `mask` is accepted whatever its other fields
    /// hold: every required term matched and no term is forbidden.
    pub fn settled(&self, mask: u64) -> bool {
        self.forbidden == 0 && mask & self.required == self.required
    }

    /// Whether the event matches the query's text.
    pub fn matches_event(&self, event: &StoredEvent) -> bool {
        if self.terms.is_empty() {
            return true;
        }
        let mut mask = 0;
        for (field, value) in TEXT_FIELDS.iter().zip(event_texts(event)) {
            let Some(value) = value else { continue };
            mask |= match *field {
                "details" | "changes" => self.json_field_mask(value),
                _ => self.field_mask(value),
            };
        }
        self.accepts(mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_case_insensitive_search() {
        assert!(contains_ignore_ascii_case(b"Llama-Finetune", b"finetune"));
        assert!(contains_ignore_ascii_case(b"abc", b""));
        assert!(!contains_ignore_ascii_case(b"llam", b"llama"));
        assert!(!contains_ignore_ascii_case(b"mistral", b"llama"));
        // Non-ASCII text is never pre-filtered: the Kelvin sign lowercases to `k`.
        let matcher = TextMatcher::new(&[TextTerm::word("k8s")]).unwrap();
        assert_eq!(matcher.field_mask("\u{212A}8s"), 1);
        assert_eq!(matcher.field_mask("{\"cluster\":\"K8S\"}"), 1);
        assert_eq!(matcher.field_mask("{\"cluster\":\"gke\"}"), 0);
    }

    fn matches(term: TextTerm, value: &str) -> bool {
        let matcher = TextMatcher::new(&[term]).unwrap();
        matcher.accepts(matcher.field_mask(value))
    }

    #[test]
    fn text_json_documents_are_searched_with_their_escapes_decoded() {
        // Python's json.dumps escapes every non-ASCII character; a newline is `\n`.
        let details = r#"{"note":"caf\u00e9 rollback\nreason","path":"a\/b"}"#;
        let json = |term: TextTerm| {
            let matcher = TextMatcher::new(&[term]).unwrap();
            matcher.accepts(matcher.json_field_mask(details))
        };
        assert!(json(TextTerm::word("café")));
        assert!(json(TextTerm::word("reason")));
        assert!(json(TextTerm::phrase("rollback reason")));
        assert!(json(TextTerm::word("a/b")));
        assert!(!json(TextTerm::word("nreason")));
        assert!(!json(TextTerm::word("u00e9")));
    }

    #[test]
    fn text_hyphenated_name_is_found_by_its_parts() {
        let name = "llama-finetune-3";
        for word in [
            "llama",
            "finetune",
            "llama-finetune",
            "finetune-3",
            "llama-finetune-3",
            "LLAMA",
        ] {
            assert!(matches(TextTerm::word(word), name), "{word}");
        }
        assert!(matches(TextTerm::phrase("llama finetune"), name));
        assert!(matches(TextTerm::prefix("llam"), name));
        assert!(matches(TextTerm::prefix("llama-fine"), name));
        assert!(!matches(TextTerm::word("llam"), name));
        assert!(!matches(TextTerm::word("finetune-llama"), name));
        assert!(!matches(TextTerm::word("llama-3"), name));
    }

    #[test]
    fn text_email_is_found_by_address_local_part_and_domain() {
        let email = "alice@example.com";
        for word in ["alice@example.com", "alice", "example.com", "Example.COM"] {
            assert!(matches(TextTerm::word(word), email), "{word}");
        }
        assert!(!matches(TextTerm::word("bob@example.com"), email));
        assert!(!matches(TextTerm::word("exam"), email));
    }

    #[test]
    fn text_negated_terms_exclude() {
        let matcher =
            TextMatcher::new(&[TextTerm::word("llama"), TextTerm::word("gpu").negate()]).unwrap();
        assert!(matcher.accepts(matcher.field_mask("llama-7b")));
        let mask = matcher.field_mask("llama-7b") | matcher.field_mask("gpu_count");
        assert!(!matcher.accepts(mask));
        assert!(!matcher.accepts(0));
    }
}

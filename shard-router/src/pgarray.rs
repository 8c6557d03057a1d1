//! PostgreSQL array literals (the text `array_out` prints, as wal2json delivers arrays) → JSON arrays.
//!
//! Hand-written because no maintained crate parses PostgreSQL's *text* array format: `postgres-types`
//! decodes only the binary wire format, and the text format has its own quoting rules (elements are
//! quoted only when needed, `\` escapes inside and outside quotes, unquoted `NULL` is the null element,
//! optional `[1:2]=` bounds decoration). The parser is iterative, so hostile nesting cannot overflow the
//! stack, and it never panics on any input.
//!
//! Out of scope: `box[]`, whose element delimiter is `;` rather than `,`; type mapping keeps such
//! arrays as text and never calls this module for them.

/// How the elements of an array are written in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementKind {
    /// Integer, numeric and floating-point elements: the element text verbatim as a JSON number, every
    /// digit kept. `NaN`, `Infinity` and `-Infinity` (which JSON numbers cannot express) become strings.
    Number,
    /// `boolean` elements: `t`/`f` become `true`/`false`.
    Bool,
    /// Everything else: JSON strings holding PostgreSQL's text for the element.
    String,
}

/// The most dimensions PostgreSQL allows (`MAXDIM`).
pub const MAX_DIMENSIONS: usize = 6;

/// Why an array literal could not be converted. Never contains element values, only positions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArrayError {
    #[error("malformed array literal at byte {at}: {reason}")]
    Malformed { at: usize, reason: &'static str },
    #[error("array element at byte {at} is not a number")]
    NotANumber { at: usize },
    #[error("array element at byte {at} is not a boolean (t or f)")]
    NotABoolean { at: usize },
    #[error("array literal nests deeper than {MAX_DIMENSIONS} dimensions")]
    TooDeep,
}

/// Converts a PostgreSQL array literal to a compact JSON array: `{1,NULL,3}` → `[1,null,3]`,
/// `{{"a b",c}}` → `[["a b","c"]]`, `[0:1]={1,2}` → `[1,2]` (bounds are dropped).
pub fn array_to_json(literal: &str, element: ElementKind) -> Result<String, ArrayError> {
    let mut p = Parser { s: literal, pos: 0 };
    p.skip_space();
    if p.peek() == Some(b'[') {
        p.skip_dimensions()?;
        p.skip_space();
    }
    if p.peek() != Some(b'{') {
        return Err(p.malformed("expected '{'"));
    }
    p.pos += 1;
    let mut out = String::with_capacity(literal.len() + 2);
    out.push('[');
    // What each open level holds so far; PostgreSQL never mixes elements and sub-arrays in one level.
    let mut levels = vec![Level::Empty];
    let mut state = Expect::FirstItem;
    loop {
        p.skip_space();
        let Some(c) = p.peek() else {
            return Err(p.malformed("unterminated array"));
        };
        match state {
            Expect::CommaOrClose => match c {
                b',' => {
                    p.pos += 1;
                    out.push(',');
                    state = Expect::Item;
                }
                b'}' => {
                    p.pos += 1;
                    out.push(']');
                    levels.pop();
                    if levels.is_empty() {
                        break;
                    }
                }
                _ => return Err(p.malformed("expected ',' or '}'")),
            },
            Expect::FirstItem if c == b'}' => {
                p.pos += 1;
                out.push(']');
                levels.pop();
                if levels.is_empty() {
                    break;
                }
                state = Expect::CommaOrClose;
            }
            Expect::FirstItem | Expect::Item if c == b'{' => {
                set_level(&mut levels, Level::Arrays, &p)?;
                if levels.len() >= MAX_DIMENSIONS {
                    return Err(ArrayError::TooDeep);
                }
                p.pos += 1;
                out.push('[');
                levels.push(Level::Empty);
                state = Expect::FirstItem;
            }
            Expect::FirstItem | Expect::Item => {
                set_level(&mut levels, Level::Elements, &p)?;
                let at = p.pos;
                let item = p.element()?;
                write_element(&mut out, item, element, at)?;
                state = Expect::CommaOrClose;
            }
        }
    }
    p.skip_space();
    if p.pos != literal.len() {
        return Err(p.malformed("unexpected text after the array"));
    }
    Ok(out)
}

/// True if `s` is a JSON number (RFC 8259 grammar), so it can be emitted verbatim.
pub(crate) fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Appends `s` to `out` as a JSON string literal (escaping as serde_json does).
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Just after `{`: an element, a sub-array or `}`.
    FirstItem,
    /// After `,`: an element or a sub-array.
    Item,
    /// After an element or a sub-array.
    CommaOrClose,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Empty,
    Elements,
    Arrays,
}

fn set_level(levels: &mut [Level], kind: Level, p: &Parser<'_>) -> Result<(), ArrayError> {
    match levels.last_mut() {
        Some(l) if *l == Level::Empty || *l == kind => {
            *l = kind;
            Ok(())
        }
        _ => Err(p.malformed("elements and sub-arrays mixed in one dimension")),
    }
}

/// One element as read: `None` is the SQL NULL element.
type Item = Option<String>;

fn write_element(
    out: &mut String,
    item: Item,
    kind: ElementKind,
    at: usize,
) -> Result<(), ArrayError> {
    let Some(text) = item else {
        out.push_str("null");
        return Ok(());
    };
    match kind {
        ElementKind::String => push_json_string(out, &text),
        ElementKind::Number if is_json_number(&text) => out.push_str(&text),
        ElementKind::Number if matches!(text.as_str(), "NaN" | "Infinity" | "-Infinity") => {
            push_json_string(out, &text);
        }
        ElementKind::Number => return Err(ArrayError::NotANumber { at }),
        ElementKind::Bool => match text.as_str() {
            "t" | "true" => out.push_str("true"),
            "f" | "false" => out.push_str("false"),
            _ => return Err(ArrayError::NotABoolean { at }),
        },
    }
    Ok(())
}

/// PostgreSQL's `array_isspace`: ASCII whitespace only.
fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}')
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn malformed(&self, reason: &'static str) -> ArrayError {
        ArrayError::Malformed {
            at: self.pos,
            reason,
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| is_pg_space(char::from(b))) {
            self.pos += 1;
        }
    }

    /// Skips `[lower:upper]...=`; the bounds carry nothing JSON can express.
    fn skip_dimensions(&mut self) -> Result<(), ArrayError> {
        while self.peek() == Some(b'[') {
            self.pos += 1;
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|b| b.is_ascii_digit() || matches!(b, b':' | b'-' | b'+'))
            {
                self.pos += 1;
            }
            if self.pos == start || self.peek() != Some(b']') {
                return Err(self.malformed("malformed dimension bounds"));
            }
            self.pos += 1;
            self.skip_space();
        }
        if self.peek() != Some(b'=') {
            return Err(self.malformed("expected '=' after dimension bounds"));
        }
        self.pos += 1;
        Ok(())
    }

    /// Reads one element, quoted or not, leaving `pos` just after it.
    fn element(&mut self) -> Result<Item, ArrayError> {
        let rest = &self.s[self.pos..];
        let mut text = String::new();
        let mut chars = rest.char_indices();
        if rest.starts_with('"') {
            chars.next();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) => text.push(c),
                        None => break,
                    },
                    Some((i, '"')) => {
                        self.pos += i + 1;
                        return Ok(Some(text));
                    }
                    Some((_, c)) => text.push(c),
                    None => break,
                }
            }
            self.pos = self.s.len();
            return Err(self.malformed("unterminated quoted element"));
        }
        // Unquoted: up to the next ',' or '}', trailing unescaped whitespace trimmed.
        let mut kept = 0; // length of `text` up to its last significant character
        let mut escaped = false;
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                ',' | '}' => {
                    end = i;
                    break;
                }
                '{' | '"' => {
                    self.pos += i;
                    return Err(self.malformed("unexpected character in an unquoted element"));
                }
                '\\' => {
                    let Some((_, c)) = chars.next() else {
                        self.pos = self.s.len();
                        return Err(self.malformed("unterminated escape"));
                    };
                    escaped = true;
                    text.push(c);
                    kept = text.len();
                }
                c => {
                    text.push(c);
                    if !is_pg_space(c) {
                        kept = text.len();
                    }
                }
            }
        }
        self.pos += end;
        text.truncate(kept);
        if text.is_empty() {
            return Err(self.malformed("empty unquoted element"));
        }
        if !escaped && text.eq_ignore_ascii_case("NULL") {
            return Ok(None);
        }
        Ok(Some(text))
    }
}

#[cfg(test)]
mod tests;

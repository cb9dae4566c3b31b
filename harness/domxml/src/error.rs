//! The one error type of the crate: what is wrong, and where in the document.

use std::fmt;

/// Whether the document could not be read at all or was read and found invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not well-formed XML, or not a `<domain>` document.
    Syntax,
    /// Well-formed, but a value is out of range or inconsistent (libvirt's "XML error").
    Invalid,
}

/// What is wrong and where in the domain document: the message with the element,
/// attribute, value and position it concerns (whichever are known). The one located error
/// of the crates that judge a domain document: this crate's [`Error`] adds its
/// [`ErrorKind`], the allocator's rejections are one, the planner's error adds its kind.
/// Displayed as [`Located`] shows it, without a value that has no attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// One sentence saying what is wrong.
    pub message: String,
    /// Element name, e.g. `address`.
    pub element: Option<String>,
    /// Attribute name, e.g. `slot`.
    pub attribute: Option<String>,
    /// Offending value, verbatim.
    pub value: Option<String>,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
}

impl Problem {
    /// A message without location; add it with the builder methods.
    pub fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            element: None,
            attribute: None,
            value: None,
            line: None,
            column: None,
        }
    }

    /// Sets the element name.
    pub fn element(mut self, name: impl Into<String>) -> Problem {
        self.element = Some(name.into());
        self
    }

    /// Sets the attribute name and value.
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Problem {
        self.attribute = Some(name.into());
        self.value = Some(value.into());
        self
    }

    /// Sets the position; a position with line 0 (a device not in the document) is no
    /// position and leaves it unset.
    pub fn at(mut self, pos: crate::TextPos) -> Problem {
        if pos.line > 0 {
            self.line = Some(pos.line);
            self.column = Some(pos.column);
        }
        self
    }

    /// The formatter for this problem; `lone_value` as in [`Located::lone_value`].
    pub fn located(&self, lone_value: bool) -> Located<'_> {
        Located {
            message: &self.message,
            element: self.element.as_deref(),
            attribute: self.attribute.as_deref(),
            value: self.value.as_deref(),
            lone_value,
            line: self.line,
            column: self.column,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.located(false), f)
    }
}

impl std::error::Error for Problem {}

/// A problem found in a domain document: its kind and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Syntax or validity problem.
    pub kind: ErrorKind,
    /// What is wrong and where.
    pub problem: Problem,
}

impl Error {
    /// A validity error without location; callers add it with the builder methods.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Invalid,
            problem: Problem::new(message),
        }
    }

    /// A syntax error (not well-formed, or not a domain document).
    pub fn syntax(problem: Problem) -> Error {
        Error {
            kind: ErrorKind::Syntax,
            problem,
        }
    }

    /// Sets the element name.
    pub fn element(mut self, name: impl Into<String>) -> Error {
        self.problem = self.problem.element(name);
        self
    }

    /// Sets the attribute name and value.
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Error {
        self.problem = self.problem.attr(name, value);
        self
    }

    /// Sets the position.
    pub fn at(mut self, pos: crate::TextPos) -> Error {
        self.problem = self.problem.at(pos);
        self
    }
}

/// Shows a value without an attribute as `value 'v'`.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.problem.located(true), f)
    }
}

/// A message with the place it concerns, displayed as
/// `message (element <e>, attribute a='v', line L, column C)`; unknown parts are left out,
/// and the parenthesis too when nothing is known. Shared by the error types of the crates
/// that report problems in a domain document, so that they all read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located<'a> {
    /// One sentence saying what is wrong.
    pub message: &'a str,
    /// Element name.
    pub element: Option<&'a str>,
    /// Attribute name.
    pub attribute: Option<&'a str>,
    /// Offending value; shown with its attribute as `attribute a='v'`.
    pub value: Option<&'a str>,
    /// Whether a value without an attribute is shown as `value 'v'` (otherwise left out).
    pub lone_value: bool,
    /// 1-based line; the position is shown only when line and column are both known.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)?;
        let mut parts: Vec<String> = Vec::new();
        if let Some(e) = self.element {
            parts.push(format!("element <{e}>"));
        }
        if let Some(a) = self.attribute {
            match self.value {
                Some(v) => parts.push(format!("attribute {a}='{v}'")),
                None => parts.push(format!("attribute {a}")),
            }
        } else if let (Some(v), true) = (self.value, self.lone_value) {
            parts.push(format!("value '{v}'"));
        }
        if let (Some(l), Some(c)) = (self.line, self.column) {
            parts.push(format!("line {l}, column {c}"));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::Located;

    fn located(lone_value: bool) -> Located<'static> {
        Located {
            message: "bad",
            element: Some("address"),
            attribute: None,
            value: Some("0x20"),
            lone_value,
            line: Some(3),
            column: None,
        }
    }

    #[test]
    fn lone_value_is_shown_only_when_asked_and_position_needs_both_parts() {
        assert_eq!(
            located(true).to_string(),
            "bad (element <address>, value '0x20')"
        );
        assert_eq!(located(false).to_string(), "bad (element <address>)");
        let full = Located {
            attribute: Some("slot"),
            column: Some(7),
            ..located(false)
        };
        assert_eq!(
            full.to_string(),
            "bad (element <address>, attribute slot='0x20', line 3, column 7)"
        );
        let bare = Located {
            element: None,
            value: None,
            line: None,
            ..located(true)
        };
        assert_eq!(bare.to_string(), "bad");
    }
}

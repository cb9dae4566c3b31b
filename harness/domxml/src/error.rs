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

/// A problem found in a domain document, with the element, attribute, value and position
/// it was found at (whichever are known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Syntax or validity problem.
    pub kind: ErrorKind,
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

impl Error {
    /// A validity error without location; callers add it with the builder methods.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error {
            kind: ErrorKind::Invalid,
            message: message.into(),
            element: None,
            attribute: None,
            value: None,
            line: None,
            column: None,
        }
    }

    /// Sets the element name.
    pub fn element(mut self, name: impl Into<String>) -> Error {
        self.element = Some(name.into());
        self
    }

    /// Sets the attribute name and value.
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Error {
        self.attribute = Some(name.into());
        self.value = Some(value.into());
        self
    }

    /// Sets the position.
    pub fn at(mut self, pos: crate::TextPos) -> Error {
        self.line = Some(pos.line);
        self.column = Some(pos.column);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut parts: Vec<String> = Vec::new();
        if let Some(e) = &self.element {
            parts.push(format!("element <{e}>"));
        }
        if let Some(a) = &self.attribute {
            match &self.value {
                Some(v) => parts.push(format!("attribute {a}='{v}'")),
                None => parts.push(format!("attribute {a}")),
            }
        } else if let Some(v) = &self.value {
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

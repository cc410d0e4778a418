//! The error a rules file can fail with, and how it is shown to the person who wrote the file.
//!
//! This file only gives errors their shape and their text (`file:line: message`); it must never
//! decide what is wrong with a rules file, which is the parser's job.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a rules file could not be loaded.
///
/// Its message names the file (if any) and line, and says what to change, for example
/// `my.rules:12: unknown key `mach` in [greeting]; expected one of: match, zh, en`.
#[derive(Debug)]
pub struct RulesError {
    path: Option<PathBuf>,
    line: Option<usize>,
    message: String,
}

impl RulesError {
    pub(in crate::robot::embedded) fn at(line: usize, message: impl Into<String>) -> Self {
        RulesError {
            path: None,
            line: Some(line),
            message: message.into(),
        }
    }

    pub(super) fn whole(message: impl Into<String>) -> Self {
        RulesError {
            path: None,
            line: None,
            message: message.into(),
        }
    }

    /// Says which file the error is in.
    pub(in crate::robot::embedded) fn in_file(mut self, path: &Path) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// An error reading the file itself rather than its contents.
    pub(in crate::robot::embedded) fn unreadable(path: &Path, message: impl Into<String>) -> Self {
        RulesError::whole(message).in_file(path)
    }

    /// The 1-based line the error is on, if it concerns one line.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The file the rules came from, if they came from a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// What is wrong, without the file name and line.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(path), Some(line)) => write!(f, "{}:{line}: {}", path.display(), self.message),
            (Some(path), None) => write!(f, "{}: {}", path.display(), self.message),
            (None, Some(line)) => write!(f, "rules line {line}: {}", self.message),
            (None, None) => write!(f, "rules: {}", self.message),
        }
    }
}

impl std::error::Error for RulesError {}

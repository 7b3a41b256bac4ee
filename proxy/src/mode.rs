//! Permissive and strict client authentication, switchable at run time.
//!
//! The mode lives in one atomic that every new connection reads once, at accept. Switching it
//! never touches established connections.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

/// How client authentication is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Accept plaintext and TLS with or without a client certificate; forward everything and
    /// count who strict mode would refuse.
    #[default]
    Permissive,
    /// Only TLS with a verified, authorized client certificate; everything else is refused.
    Strict,
}

impl Mode {
    /// The `snake_case` name, as used in configuration, the API and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permissive => "permissive",
            Self::Strict => "strict",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is neither `permissive` nor `strict`.
#[derive(Debug, thiserror::Error)]
#[error("unknown mode {0:?}: expected \"permissive\" or \"strict\"")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "permissive" => Ok(Self::Permissive),
            "strict" => Ok(Self::Strict),
            _ => Err(UnknownMode(text.trim().to_owned())),
        }
    }
}

/// The mode in force, shared by every listener and the admin API.
#[derive(Debug)]
pub struct ModeSwitch {
    current: AtomicU8,
}

impl ModeSwitch {
    pub fn new(mode: Mode) -> Self {
        let switch = Self {
            current: AtomicU8::new(mode as u8),
        };
        switch.export(mode);
        switch
    }

    /// The mode in force.
    pub fn get(&self) -> Mode {
        match self.current.load(Ordering::Acquire) {
            value if value == Mode::Strict as u8 => Mode::Strict,
            _ => Mode::Permissive,
        }
    }

    /// Sets the mode; returns the previous one.
    pub fn set(&self, mode: Mode) -> Mode {
        let previous = self.current.swap(mode as u8, Ordering::AcqRel);
        self.export(mode);
        if previous == Mode::Strict as u8 {
            Mode::Strict
        } else {
            Mode::Permissive
        }
    }

    fn export(&self, mode: Mode) {
        for candidate in [Mode::Permissive, Mode::Strict] {
            let value = if candidate == mode { 1.0 } else { 0.0 };
            metrics::gauge!("portcullis_mode", "mode" => candidate.as_str()).set(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_switches() {
        assert_eq!("Strict".parse::<Mode>().ok(), Some(Mode::Strict));
        assert!("lenient".parse::<Mode>().is_err());
        let switch = ModeSwitch::new(Mode::Permissive);
        assert_eq!(switch.set(Mode::Strict), Mode::Permissive);
        assert_eq!(switch.get(), Mode::Strict);
    }
}

//! Trace digests for the determinism meta-check: the same seed must give the same trace.

use super::History;
use serde::{Deserialize, Serialize};
use std::fmt;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A stable 64-bit hash of a trace: FNV-1a over each event's rendering followed by a `\n`.
/// Independent of the build, the target and the process (no `DefaultHasher`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TraceDigest(pub u64);

impl TraceDigest {
    /// The digest of no events.
    pub const EMPTY: TraceDigest = TraceDigest(FNV_OFFSET);

    /// Folds one more line into the digest.
    pub fn update(self, line: &str) -> TraceDigest {
        let mut h = self.0;
        for &b in line.as_bytes().iter().chain(b"\n") {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        TraceDigest(h)
    }

    /// The digest of a sequence of rendered lines.
    pub fn of_lines<S: AsRef<str>>(lines: &[S]) -> TraceDigest {
        lines
            .iter()
            .fold(TraceDigest::EMPTY, |d, l| d.update(l.as_ref()))
    }

    /// The digest of a history's event renderings.
    pub fn of_history(history: &History) -> TraceDigest {
        history
            .events()
            .iter()
            .fold(TraceDigest::EMPTY, |d, e| d.update(&e.to_string()))
    }
}

impl fmt::Display for TraceDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Where two traces first differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// Index of the first differing line (the shorter trace's length when one is a prefix of
    /// the other).
    pub index: usize,
    /// Line `index` of the first trace, if it has one.
    pub left: Option<String>,
    /// Line `index` of the second trace, if it has one.
    pub right: Option<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "traces diverge at event {}: {} vs {}",
            self.index,
            self.left.as_deref().unwrap_or("<end>"),
            self.right.as_deref().unwrap_or("<end>")
        )
    }
}

/// Compares two traces (rendered lines); `None` when they are identical.
pub fn first_divergence<S: AsRef<str>>(a: &[S], b: &[S]) -> Option<Divergence> {
    let common = a.len().min(b.len());
    let index =
        (0..common)
            .find(|&i| a[i].as_ref() != b[i].as_ref())
            .or(if a.len() == b.len() {
                None
            } else {
                Some(common)
            })?;
    Some(Divergence {
        index,
        left: a.get(index).map(|s| s.as_ref().to_string()),
        right: b.get(index).map(|s| s.as_ref().to_string()),
    })
}

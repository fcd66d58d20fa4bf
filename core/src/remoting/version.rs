//! Client and broker versions: the `version` of every remoting command is the ordinal of
//! RocketMQ's `MQVersion.Version` enum; tools and metrics print its name.
//!
//! From 4.0.0 the enum has a SNAPSHOT and a release constant per `major.minor.patch`, minor and
//! patch each 0–9, 4.0.0-SNAPSHOT at ordinal 212, up to 5.9.9 and then `HIGHER_VERSION`
//! (read off `common/.../MQVersion.java`: V4_9_8 is 409, V5_3_3 is 479). The 3.x constants
//! before 212 follow no such rule; their ordinals are printed as numbers.

const V4_0_0_SNAPSHOT: i64 = 212;
/// Constants per major version: 10 minors × 10 patches × (SNAPSHOT, release).
const PER_MAJOR: i64 = 200;
const HIGHER_VERSION: i64 = V4_0_0_SNAPSHOT + 2 * PER_MAJOR;

/// `409` → `V4_9_8`, `212` → `V4_0_0_SNAPSHOT`, `612` → `HIGHER_VERSION`, `7` → `7`.
pub fn version_name(ordinal: i64) -> String {
    match ordinal {
        v if (V4_0_0_SNAPSHOT..HIGHER_VERSION).contains(&v) => {
            let index = v - V4_0_0_SNAPSHOT;
            let (major, rest) = (4 + index / PER_MAJOR, index % PER_MAJOR);
            let (minor, patch) = (rest / 2 / 10, rest / 2 % 10);
            let snapshot = if rest % 2 == 0 { "_SNAPSHOT" } else { "" };
            format!("V{major}_{minor}_{patch}{snapshot}")
        }
        HIGHER_VERSION => "HIGHER_VERSION".to_owned(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_name_as_rocketmq_names_them() {
        assert_eq!(version_name(409), "V4_9_8");
        assert_eq!(version_name(479), "V5_3_3");
        assert_eq!(version_name(212), "V4_0_0_SNAPSHOT");
        assert_eq!(version_name(213), "V4_0_0");
        assert_eq!(version_name(412), "V5_0_0_SNAPSHOT");
        assert_eq!(version_name(611), "V5_9_9");
        assert_eq!(version_name(612), "HIGHER_VERSION");
        assert_eq!(version_name(7), "7");
    }
}
